"""`sightline inspect PHOTO` and `sightline tag PHOTO...`: the worker's pipeline on local files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="format, size, orientation, time and GPS of a photo")
    p.add_argument("photo")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=inspect_photo)
    t = sub.add_parser("tag", help="tag local photos (no S3, broker or database)")
    t.add_argument("photos", nargs="+")
    t.add_argument("--json", action="store_true", help="one JSON object per photo, per line")
    t.add_argument(
        "--release", help="a landmark release file (.npz) to match against, as the worker does"
    )
    t.set_defaults(func=tag_photos)


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def inspect_photo(args: argparse.Namespace) -> int:
    from sightline.settings import Settings
    from workers.exif import read_exif
    from workers.photos import PhotoError, decode

    s = Settings.from_env()
    try:
        data = _read(args.photo)
        photo = decode(data, resize=32, crop=32, max_pixels=s.max_pixels)
    except OSError as exc:
        out: dict = {"error": f"cannot read {args.photo}: {exc.strerror}"}
    except PhotoError as exc:
        out = {"error": str(exc)}
    else:
        facts = read_exif(data)
        out = {
            "format": photo.format,
            "width": photo.width,
            "height": photo.height,
            "orientation": photo.orientation,
            "taken_at": facts.taken_at.isoformat() if facts.taken_at else None,
            "gps": {"lat": facts.gps[0], "lon": facts.gps[1]} if facts.gps else None,
            "camera": facts.camera,
        }
    if args.json:
        print(json.dumps(out))
    elif "error" in out:
        print(f"sightline: {args.photo}: {out['error']}", file=sys.stderr)
    else:
        for k, v in out.items():
            print(f"{k:12} {v}")
    return 2 if "error" in out else 0


def tag_photos(args: argparse.Namespace) -> int:
    from sightline.settings import Settings
    from workers.inference import SceneLandmarkModel
    from workers.pipeline import LiveRelease, analyse

    s = Settings.from_env()
    releases = []
    if args.release:
        from sightline.landmark_inputs import load_release_file

        r = load_release_file(args.release)
        releases.append(LiveRelease(r.version, r.model_version, r.index()))
    model = SceneLandmarkModel.from_settings(s)
    model.load()
    assert model.meta is not None
    if not model.meta.scene_head.trained:
        note = "untrained network: these labels are noise, not predictions"
        print(json.dumps({"warning": note}) if args.json else f"WARNING: {note}")
    if releases and not model.meta.serves_landmarks:
        note = "the landmark embedding head is untrained: no landmark matching"
        print(json.dumps({"warning": note}) if args.json else f"WARNING: {note}")
    if releases and releases[0].model_version != model.meta.model_version:
        note = (
            f"release {releases[0].version} was built from {releases[0].model_version}, not "
            f"{model.meta.model_version}: no landmark matching"
        )
        print(json.dumps({"warning": note}) if args.json else f"WARNING: {note}")
    status = 0
    # One forward pass per batch of photos, as the worker runs them.
    for lo in range(0, len(args.photos), s.batch_size):
        paths = args.photos[lo : lo + s.batch_size]
        datas: dict[str, bytes] = {}
        results: dict[str, dict] = {}
        for path in paths:
            try:
                datas[path] = _read(path)
            except OSError as exc:
                results[path] = {"error": f"cannot read: {exc.strerror}"}
        tagged = analyse(list(datas.values()), model, releases, max_pixels=s.max_pixels)
        for path, r in zip(datas, tagged):
            results[path] = {"error": str(r)} if isinstance(r, Exception) else r.to_json()
        for path in paths:
            status = _print_tagged(path, results[path], args.json) or status
    return status


def _print_tagged(path: str, result: dict, as_json: bool) -> int:
    """Print one photo's tags (or error); returns 2 for an error, else 0."""
    if as_json:
        print(json.dumps({"photo": path, **result}))
    elif "error" in result:
        print(f"{path}: error: {result['error']}")
    else:
        top = ", ".join(f"{c['class']} {c['probability']:.3f}" for c in result["scenes"])
        albums = ", ".join(f"{a['album']} {a['score']:.3f}" for a in result["albums"])
        marks = ", ".join(f"{m['landmark_id']} {m['score']:.3f}" for m in result["landmarks"])
        print(
            f"{path}: {top}\n    albums: {albums}" + (f"\n    landmarks: {marks}" if marks else "")
        )
    return 2 if "error" in result else 0
