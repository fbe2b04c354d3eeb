"""`sightline eval landmarks`: the article's accuracies, frequent vs rare, and GAP."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("landmarks", help="landmark accuracy, not-a-landmark accuracy, GAP")
    p.add_argument("--release", required=True, help="release file")
    p.add_argument("--embeddings", required=True, help="E.npy, (N, D) float embeddings")
    p.add_argument("--labels", required=True, help="(N,) int landmark id, -1 for none")
    p.add_argument("--gps", help="G.npy, (N, 2) lat, lon; NaN for none")
    p.add_argument(
        "--train-counts",
        help="CSV id,count of training photos (default: the counts the release carries)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models.landmark_eval import evaluate
    from sightline.landmark_inputs import load_labelled_set, read_train_counts, truth_indices

    release, e, labels, gps = load_labelled_set(
        args.release, args.embeddings, args.labels, args.gps
    )
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
