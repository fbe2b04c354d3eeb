"""`sightline eval landmarks`: the article's accuracies, frequent vs rare, and GAP."""

from __future__ import annotations

import argparse
import json

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("landmarks", help="landmark accuracy, not-a-landmark accuracy, GAP")
    p.add_argument("--release", required=True, help="release file")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--labels", required=True, help="(N,) int landmark id, -1 for none")
    p.add_argument("--gps")
    p.add_argument(
        "--train-counts",
        help="CSV id,count of training photos (default: the counts the release carries)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models.landmark_eval import evaluate
    from models.release import ReleaseError, load_release
    from sightline.landmark_inputs import (
        load_array,
        load_embeddings,
        load_gps,
        read_train_counts,
        truth_indices,
    )

    try:
        release = load_release(args.release)
    except ReleaseError as exc:
        raise CliError(str(exc)) from None
    e = load_embeddings(args.embeddings)
    if e.shape[1] != release.embedding_dim:
        raise CliError(f"embeddings have dim {e.shape[1]}, release {release.embedding_dim}")
    labels = load_array(args.labels, "labels", 1, integer=True)
    if len(labels) != len(e):
        raise CliError(f"{len(labels)} labels for {len(e)} embeddings")
    gps = load_gps(args.gps, len(e))
    counts = (
        read_train_counts(args.train_counts, release.landmark_ids)
        if args.train_counts
        else release.train_photos
    )
    m = evaluate(release.index(), e, truth_indices(labels, release.landmark_ids), gps, counts)
    m["release"] = release.version
    if args.json:
        print(json.dumps(m))
        return 0
    for k, v in m.items():
        print(f"{k:22} {v:.4f}" if isinstance(v, float) else f"{k:22} {v}")
    return 0
