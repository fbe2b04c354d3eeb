"""Landmark releases: `centroids build`, `clean`, `release import|activate|list`, `match`,
`calibrate`. The maths lives in models/; the database side in workers/releases.py."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("centroids", help="landmark centroids")
    csub = c.add_subparsers(dest="centroids_command", metavar="ACTION", required=True)
    b = csub.add_parser("build", help="build a release file: centroids by complete linkage")
    b.add_argument("--embeddings", required=True, help="E.npy, (N, D) float")
    b.add_argument("--labels", required=True, help="L.npy, (N,) int landmark id, -1 for none")
    b.add_argument("--landmarks", required=True, help="CSV: id,name,city,country,lat,lon")
    b.add_argument("--references", help="R.npy, (R, D) reference embeddings")
    b.add_argument("--reference-labels", help="RL.npy, (R,) landmark id per reference")
    b.add_argument(
        "--min-cluster",
        type=int,
        default=50,
        help="photos a view needs to get its own centroid (default: 50); a landmark with no "
        "such cluster gets one centroid of all its photos",
    )
    b.add_argument(
        "--linkage-threshold",
        type=float,
        default=0.5,
        help="complete-linkage cut, in cosine distance (1 - dot product)",
    )
    b.add_argument("--model-version", help="the model the embeddings came from")
    b.add_argument(
        "--weights",
        help="the checkpoint the embeddings came from (default SIGHTLINE_WEIGHTS): gives the "
        "model version and each head's provenance; untrained embedding heads are refused",
    )
    b.add_argument("--version", help="release version (default: derived from the content)")
    _threshold_args(b)
    b.add_argument("--out", required=True, help="the release file to write (.npz)")
    b.add_argument("--json", action="store_true", help="print the result as one JSON object")
    b.set_defaults(func=build)

    cl = sub.add_parser("clean", help="keep photos near their landmark's references")
    cl.add_argument("--embeddings", required=True, help="E.npy, (N, D) float photo embeddings")
    cl.add_argument("--labels", required=True, help="L.npy, (N,) int landmark id per photo")
    cl.add_argument("--references", required=True, help="R.npy, (R, D) reference embeddings")
    cl.add_argument(
        "--reference-labels", required=True, help="RL.npy, (R,) landmark id per reference"
    )
    cl.add_argument("--threshold", type=float, required=True, help="max mean cosine distance")
    cl.add_argument("--out", required=True, help="KEEP.npy: (N,) bool")
    cl.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    cl.set_defaults(func=clean)

    r = sub.add_parser("release", help="landmark releases in the database")
    rsub = r.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    imp = rsub.add_parser("import", help="load a release file (refused on model mismatch)")
    imp.add_argument("file", help="a release file (.npz) from `centroids build` or `calibrate`")
    imp.add_argument(
        "--new-model",
        action="store_true",
        help="a release for new weights no stored photo has yet (the start of a model switch)",
    )
    imp.add_argument("--json", action="store_true", help="print the result as one JSON object")
    imp.set_defaults(func=release_import)
    act = rsub.add_parser("activate", help="switch the albums to a ready release atomically")
    act.add_argument("version", help="an imported release, re-tagged (status ready)")
    act.add_argument("--json", action="store_true", help="print the result as one JSON object")
    act.set_defaults(func=release_activate)
    ls = rsub.add_parser("list", help="releases and their status")
    ls.add_argument("--json", action="store_true", help="print the releases as a JSON array")
    ls.set_defaults(func=release_list)
    from sightline.commands import release_ops

    release_ops.register(rsub)

    m = sub.add_parser("match", help="match embeddings against a release file")
    m.add_argument("--release", required=True, help="a release file (.npz)")
    m.add_argument("--embeddings", required=True, help="E.npy, (N, D) float query embeddings")
    m.add_argument("--gps", help="G.npy, (N, 2) lat, lon; NaN for none")
    m.add_argument("--json", action="store_true", help="one JSON line per query")
    m.set_defaults(func=match)

    cal = sub.add_parser("calibrate", help="thresholds for a target false-positive rate")
    cal.add_argument("--release", required=True, help="the release file to tune (.npz)")
    cal.add_argument("--embeddings", help="E.npy, (N, D): a labelled set (with --labels)")
    cal.add_argument("--labels", help="L.npy, (N,) landmark id, -1 for not a landmark")
    cal.add_argument("--gps", help="G.npy, (N, 2) lat, lon of the labelled set; NaN for none")
    cal.add_argument(
        "--corrections",
        help="`sightline corrections export` output: hidden landmark matches count as false "
        "positives, added landmarks as positives (photos of the release's model only)",
    )
    cal.add_argument(
        "--target-fpr",
        type=float,
        default=0.01,
        help="at most this share of not-a-landmark photos may match (default: 0.01)",
    )
    cal.add_argument("--version", help="new version (default: VERSION+fprTARGET)")
    cal.add_argument("--out", required=True, help="the tuned release file to write (.npz)")
    cal.add_argument(
        "--json", action="store_true", help="print thresholds and metrics as one JSON object"
    )
    cal.set_defaults(func=calibrate)


def _threshold_args(p: argparse.ArgumentParser) -> None:
    # Defaults come from models.landmarks.Thresholds when the command runs: building the
    # parser must not import numpy (a handler-only install runs `sightline events parse`).
    p.add_argument("--geo-threshold", type=float, help="default 0.6")
    p.add_argument("--general-threshold", type=float, help="default 0.8")
    p.add_argument("--verify-threshold", type=float, help="default 0.7")
    p.add_argument("--square-km", type=float, help="default 1")


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data) if getattr(args, "json", False) else text)


def _load_release(path: str):
    from sightline.landmark_inputs import load_release_file

    return load_release_file(path)


def build(args: argparse.Namespace) -> int:
    import numpy as np

    from models.centroids import build_centroids
    from models.landmarks import Thresholds
    from models.release import ReleaseError, make_release, save_release
    from sightline.landmark_inputs import (
        load_array,
        load_embeddings,
        read_landmarks_csv,
        same_length,
    )

    if args.min_cluster < 1:
        raise CliError("--min-cluster must be at least 1")
    if args.square_km is not None and not (math.isfinite(args.square_km) and args.square_km > 0):
        raise CliError(f"--square-km must be more than 0 km, not {args.square_km}")
    model_version, heads = _embedding_source(args)
    e = load_embeddings(args.embeddings)
    labels = load_array(args.labels, "labels", 1, integer=True)
    same_length(embeddings=e, labels=labels)
    rows = read_landmarks_csv(args.landmarks)
    by_id = {r["id"]: r for r in rows}
    missing = sorted({int(v) for v in np.unique(labels) if v != -1 and str(int(v)) not in by_id})
    if missing:
        raise CliError(f"labels {missing[:5]} have no row in {args.landmarks}")
    refs = ref_labels = None
    if (args.references is None) != (args.reference_labels is None):
        raise CliError("--references and --reference-labels go together")
    if args.references:
        refs = load_embeddings(args.references, "references")
        ref_labels = load_array(args.reference_labels, "reference labels", 1, integer=True)
        same_length(references=refs, reference_labels=ref_labels)
        if refs.shape[1] != e.shape[1]:
            raise CliError(f"references have dim {refs.shape[1]}, embeddings {e.shape[1]}")
    cs = build_centroids(
        e, labels, min_cluster=args.min_cluster, linkage_threshold=args.linkage_threshold
    )
    # The release holds the landmarks that have photos; the rest would never match.
    kept = [by_id[str(lab)] for lab in sorted(cs.photos)]
    pos = {int(r["id"]): i for i, r in enumerate(kept)}
    for r in kept:
        r["photos"] = cs.photos[int(r["id"])]
    if refs is not None:
        use = np.array([int(v) in pos for v in ref_labels], dtype=bool)
        refs, ref_idx = refs[use], np.array([pos[int(v)] for v in ref_labels[use]], np.int64)
    else:
        ref_idx = None
    given = {
        "geo": args.geo_threshold,
        "general": args.general_threshold,
        "verify": args.verify_threshold,
        "square_km": args.square_km,
    }
    thresholds = Thresholds(**{k: v for k, v in given.items() if v is not None})
    notes = {"min_cluster": args.min_cluster, "linkage_threshold": args.linkage_threshold}
    if heads:
        notes["heads"] = heads
    try:
        release = make_release(
            version=args.version or "pending",
            model_version=model_version,
            thresholds=thresholds,
            landmarks=kept,
            centroids=cs.centroids,
            centroid_landmarks=np.array([pos[int(v)] for v in cs.labels], np.int64),
            references=refs,
            reference_landmarks=ref_idx,
            notes=notes,
        )
        if not args.version:
            from dataclasses import replace

            release = replace(release, version=f"r-{release.content_hash()[:12]}")
        save_release(release, args.out)
    except ReleaseError as exc:
        raise CliError(str(exc)) from None
    multi = cs.multi_centroid_landmarks
    out = {
        "version": release.version,
        "out": args.out,
        "landmarks": len(kept),
        "landmarks_without_photos": len(rows) - len(kept),
        "centroids": len(cs.centroids),
        "multi_centroid_landmarks": multi,
        "multi_centroid_share": round(multi / len(kept), 4) if kept else 0.0,
        "references": 0 if refs is None else len(refs),
        "photos": int(sum(cs.photos.values())),
    }
    _print(
        args,
        out,
        f"release {release.version} -> {args.out}: {out['landmarks']} landmarks, "
        f"{out['centroids']} centroids; {multi} landmarks got more than one centroid "
        f"({100 * out['multi_centroid_share']:.1f}%)",
    )
    return 0


def _embedding_source(args: argparse.Namespace) -> tuple[str, dict[str, Any] | None]:
    """(model version, heads' provenance or None) of the embeddings a release is built from;
    CliError for an untrained embedding head beside a real scene head."""
    import os

    from models.checkpoint import CheckpointError, read_meta
    from models.release import ReleaseError, refuse_untrained_embeddings

    path = args.weights or os.environ.get("SIGHTLINE_WEIGHTS") or None
    meta = None
    if path:
        try:
            meta = read_meta(path)
        except CheckpointError as exc:
            if args.weights:
                raise CliError(str(exc)) from None
    if args.weights and args.model_version and meta.model_version != args.model_version:
        raise CliError(
            f"--weights {args.weights} is model {meta.model_version}, "
            f"not --model-version {args.model_version}"
        )
    model_version = args.model_version or (meta.model_version if meta else None)
    if not model_version:
        raise CliError("give --model-version or --weights: the model the embeddings came from")
    if meta is None or meta.model_version != model_version:
        return model_version, None  # SIGHTLINE_WEIGHTS is another model: nothing known
    try:
        refuse_untrained_embeddings(
            model_version,
            scene_trained=meta.scene_head.trained,
            embedding_trained=meta.embedding_head.trained,
        )
    except ReleaseError as exc:
        raise CliError(str(exc)) from None
    return model_version, meta.heads()


def clean(args: argparse.Namespace) -> int:
    import numpy as np

    from models.centroids import clean_mask
    from sightline.landmark_inputs import load_array, load_embeddings, same_length

    e = load_embeddings(args.embeddings)
    labels = load_array(args.labels, "labels", 1, integer=True)
    refs = load_embeddings(args.references, "references")
    rl = load_array(args.reference_labels, "reference labels", 1, integer=True)
    same_length(embeddings=e, labels=labels)
    same_length(references=refs, reference_labels=rl)
    keep = clean_mask(e, labels, refs, rl, threshold=args.threshold)
    with open(args.out, "wb") as f:  # np.save(path) would add ".npy" to another name
        np.save(f, keep)
    out = {"photos": len(keep), "kept": int(keep.sum()), "dropped": int((~keep).sum())}
    _print(args, out, f"kept {out['kept']} of {out['photos']} photos -> {args.out}")
    return 0


def _connect():
    from sightline.embedded import database_url
    from workers.db import connect
    from workers.settings import Settings

    s = Settings.from_env()
    url, server = database_url(s)
    return connect(url, timeout_s=max(s.db_timeout_s, 300)), server


@contextmanager
def release_db() -> Iterator[Any]:
    """A database connection for a release command, closed after; a ReleaseRefused raised
    inside becomes a one-line CliError with its reason."""
    from workers.releases import ReleaseRefused

    conn, _server = _connect()
    try:
        yield conn
    except ReleaseRefused as exc:
        raise CliError(str(exc)) from None
    finally:
        conn.close()


def release_import(args: argparse.Namespace) -> int:
    from workers.releases import ReleaseRefused, import_release

    release = _load_release(args.file)
    conn, _server = _connect()
    try:
        result = import_release(conn, release, new_model=args.new_model)
    except ReleaseRefused as exc:
        raise CliError(f"release {release.version} refused: {exc}") from None
    finally:
        conn.close()
    out = {
        "version": release.version,
        "result": result,
        "landmarks": len(release.landmark_ids),
        "centroids": len(release.centroids),
        "references": len(release.references),
    }
    note = "already imported, unchanged" if result == "unchanged" else "imported"
    _print(
        args,
        out,
        f"release {release.version}: {note}; next: sightline retag --release {release.version}",
    )
    return 0


def release_activate(args: argparse.Namespace) -> int:
    from workers.releases import activate

    with release_db() as conn:
        previous = activate(conn, args.version)
    _print(
        args,
        {"active": args.version, "replaced": previous},
        f"release {args.version} is active" + (f" (was {previous})" if previous else ""),
    )
    return 0


def release_list(args: argparse.Namespace) -> int:
    from workers.releases import list_releases

    conn, _server = _connect()
    try:
        with conn, conn.cursor() as cur:
            rows = list_releases(cur)
    finally:
        conn.close()
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        print(
            f"{r['version']:24} {r['status']:10} {r['landmarks']:>7} landmarks "
            f"{r['centroids']:>7} centroids  model {r['model_version']}"
        )
    if not rows:
        print("no releases")
    return 0


def match(args: argparse.Namespace) -> int:
    from sightline.landmark_inputs import load_embeddings, load_gps

    release = _load_release(args.release)
    q = load_embeddings(args.embeddings)
    if q.shape[1] != release.embedding_dim:
        raise CliError(f"embeddings have dim {q.shape[1]}, release {release.embedding_dim}")
    gps = load_gps(args.gps, len(q))
    index = release.index()
    out = sys.stdout
    for i, ms in enumerate(index.match(q, gps)):
        found = [
            {"landmark_id": index.landmark_ids[m.landmark], "score": round(m.score, 6)} for m in ms
        ]
        if args.json:
            out.write(json.dumps({"index": i, "matches": found}) + "\n")
        else:
            text = ", ".join(f"{f['landmark_id']} ({f['score']:.3f})" for f in found)
            out.write(f"{i}: {text or 'not a landmark'}\n")
    return 0


def calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from models.landmark_eval import calibrate as fit
    from models.landmark_eval import evaluate
    from models.release import save_release
    from sightline.landmark_inputs import (
        load_corrections,
        load_labelled_set,
        load_release_file,
        truth_indices,
    )

    if (args.embeddings is None) != (args.labels is None):
        raise CliError("--embeddings and --labels go together")
    if args.embeddings is None and args.corrections is None:
        raise CliError("give a labelled set (--embeddings, --labels), --corrections, or both")
    if not 0 <= args.target_fpr < 1:
        raise CliError("--target-fpr must be in [0, 1)")
    if args.embeddings is not None:
        release, e, labels, gps = load_labelled_set(
            args.release, args.embeddings, args.labels, args.gps
        )
        truth = truth_indices(labels, release.landmark_ids)
    else:
        release = load_release_file(args.release)
        e = np.zeros((0, release.embedding_dim), np.float32)
        truth, gps = np.zeros(0, np.int64), None
    used = None
    if args.corrections is not None:
        ce, ct, cg, used = load_corrections(args.corrections, release)
        own_gps = np.full((len(e), 2), np.nan) if gps is None else gps
        e, truth = np.concatenate([e, ce]), np.concatenate([truth, ct])
        gps = np.concatenate([own_gps, cg])
    if not len(e):
        raise CliError(
            f"no photo to calibrate on: corrections {args.corrections} hold no landmark "
            f"correction of a photo of release {release.version}'s model"
        )
    try:
        cal = fit(release.index(), e, truth, gps, target_fpr=args.target_fpr)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    version = args.version or f"{release.version}+fpr{args.target_fpr:g}"
    tuned = release.with_thresholds(
        cal.thresholds,
        version=version,
        calibration={
            "target_fpr": args.target_fpr,
            "photos": len(e),
            "non_landmark_photos": int((truth == -1).sum()),
            "geo_calibrated": cal.geo_calibrated,
            "corrections": used,
        },
    )
    save_release(tuned, args.out)
    m = evaluate(tuned.index(), e, truth, gps, tuned.train_photos)
    out = {
        "version": version,
        "out": args.out,
        "target_fpr": args.target_fpr,
        "thresholds": cal.thresholds.to_dict(),
        "geo_calibrated": cal.geo_calibrated,
        "fpr_without_gps": cal.fpr_general,
        "fpr_with_gps": cal.fpr_geo,
        "corrections": used,
        "metrics": m,
    }
    t = cal.thresholds
    _print(
        args,
        out,
        f"release {version} -> {args.out}: geo {t.geo:.4f}"
        f"{'' if cal.geo_calibrated else ' (kept: no GPS rows)'}, general {t.general:.4f}, "
        f"verify {t.verify:.4f}; on these photos: FPR {m['false_positive_rate']:.4f}, "
        f"landmark accuracy {m['landmark_accuracy'] or 0:.4f}",
    )
    return 0
