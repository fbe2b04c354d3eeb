"""`sightline inspect PHOTO`, `sightline tag PHOTO...` and `sightline embed PHOTO...`: the
worker's pipeline on local files."""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="format, size, orientation, time and GPS of a photo")
    p.add_argument("photo", help="a local photo file")
    p.add_argument(
        "--json", action="store_true", help='one JSON object on stdout (an error: {"error": ...})'
    )
    p.add_argument(
        "--save-input",
        metavar="FILE.png",
        help="write the exact network input (after orientation, scaling and colour "
        "conversion) as an 8-bit RGB PNG",
    )
    p.set_defaults(func=inspect_photo)
    t = sub.add_parser("tag", help="tag local photos (no S3, broker or database)")
    t.add_argument("photos", nargs="+", metavar="PHOTO", help="local photo files")
    t.add_argument("--json", action="store_true", help="one JSON object per photo, per line")
    t.add_argument(
        "--release", help="a landmark release file (.npz) to match against, as the worker does"
    )
    t.set_defaults(func=tag_photos)
    e = sub.add_parser(
        "embed",
        help="landmark embeddings of local photos, for `centroids build`, `clean`, `match`",
        description=(
            "Run the landmark branch on local photos and write their embeddings as E.npy: "
            "(N, D) float32 unit vectors, one row per photo that decoded, in input order. "
            "A photo that cannot be read or decoded is skipped with one line on stderr "
            "(exit status 2); when none decodes, nothing is written. --names says which "
            "photo each row is."
        ),
    )
    e.add_argument("photos", nargs="*", metavar="PHOTO", help="local photo files")
    e.add_argument("--from", dest="from_file", help="a file of photo paths, one a line; - stdin")
    e.add_argument("--out", required=True, help="E.npy to write")
    e.add_argument("--names", help="names.txt to write: the photo path of each row, one a line")
    e.add_argument("--json", action="store_true", help="a summary object on stdout")
    e.set_defaults(func=embed_photos)


def read_photo_file(path: str, max_bytes: int) -> bytes:
    """A photo file's bytes, with the worker's cap on an object (SIGHTLINE_MAX_OBJECT_BYTES).
    OSError, its strerror one line, for a file that is not a regular file (a FIFO would block,
    a device never end) or is larger than the cap. Checked before the open, then opened
    without blocking and checked again on the open file, so a path swapped for a FIFO
    between the two cannot hang."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # not opened at all (a tty, a device)
        raise OSError(errno.EINVAL, "not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        size = max(st.st_size, len(data))
        raise OSError(errno.EFBIG, f"{size} bytes exceeds SIGHTLINE_MAX_OBJECT_BYTES ({max_bytes})")
    return data


def inspect_photo(args: argparse.Namespace) -> int:
    from workers.photos import PhotoError, decode
    from workers.settings import Settings

    s = Settings.from_env()
    try:
        resize, crop = _input_size(s) if args.save_input else (32, 32)
        data = read_photo_file(args.photo, s.max_object_bytes)
        photo = decode(data, resize=resize, crop=crop, max_pixels=s.max_pixels)
    except OSError as exc:
        out: dict = {"error": f"cannot read: {exc.strerror}"}
    except PhotoError as exc:
        out = {"error": str(exc)}
    else:
        facts = photo.exif
        out = {
            "format": photo.format,
            "width": photo.width,
            "height": photo.height,
            "orientation": photo.orientation,
            "taken_at": facts.taken_at.isoformat() if facts.taken_at else None,
            "gps": {"lat": facts.gps[0], "lon": facts.gps[1]} if facts.gps else None,
            "camera": facts.camera,
            "warnings": list(facts.warnings),
        }
        if args.save_input:
            saved = _save_input(photo.crop, args.save_input)
            out = {"error": saved["error"]} if "error" in saved else {**out, "input": saved}
    if args.json:
        print(json.dumps(out))
    elif "error" in out:
        _error(args.photo, out["error"])
    else:
        for k, v in out.items():
            print(f"{k:12} {v}")
    return 2 if "error" in out else 0


def _input_size(s) -> tuple[int, int]:
    """(resize, crop) of the network the worker would run: from the checkpoint's own
    transform when SIGHTLINE_WEIGHTS names one, else the arch's default."""
    from models.transforms import default_transform

    if s.weights:
        from workers.inference import SceneLandmarkModel

        t = SceneLandmarkModel.from_settings(s).transform
    else:
        t = default_transform(s.arch)
    return t.resize, t.crop


def _save_input(crop, path: str) -> dict:
    """Write the uint8 (crop, crop, 3) network input as an RGB PNG; its path and size."""
    from PIL import Image

    try:
        Image.fromarray(crop, "RGB").save(path, "PNG")
    except OSError as exc:
        return {"error": f"cannot write {path}: {exc.strerror or exc}"}
    return {"path": path, "width": int(crop.shape[1]), "height": int(crop.shape[0])}


def tag_photos(args: argparse.Namespace) -> int:
    from workers.inference import SceneLandmarkModel
    from workers.pipeline import analyse
    from workers.releases import LiveRelease
    from workers.settings import Settings

    s = Settings.from_env()
    releases = []
    if args.release:
        from sightline.landmark_inputs import load_release_file

        r = load_release_file(args.release)
        releases.append(LiveRelease(r.version, r.model_version, r.index()))
    model = SceneLandmarkModel.from_settings(s)
    model.load()
    assert model.meta is not None
    # Warnings go to stderr: with --json, stdout holds only one object per photo.
    if not model.meta.scene_head.trained:
        _warn("untrained network: these labels are noise, not predictions")
    if releases and not model.meta.serves_landmarks:
        _warn("the landmark embedding head is untrained: no landmark matching")
    if releases and releases[0].model_version != model.meta.model_version:
        _warn(
            f"release {releases[0].version} was built from {releases[0].model_version}, not "
            f"{model.meta.model_version}: no landmark matching"
        )
    status = 0
    # One forward pass per batch of photos, as the worker runs them.
    for lo in range(0, len(args.photos), s.batch_size):
        paths = args.photos[lo : lo + s.batch_size]
        datas: dict[str, bytes] = {}
        results: dict[str, dict] = {}
        for path in paths:
            try:
                datas[path] = read_photo_file(path, s.max_object_bytes)
            except OSError as exc:
                results[path] = {"error": f"cannot read: {exc.strerror}"}
        tagged = analyse(list(datas.values()), model, releases, max_pixels=s.max_pixels)
        for path, r in zip(datas, tagged):
            results[path] = {"error": str(r)} if isinstance(r, Exception) else r.to_json()
        for path in paths:
            status = _print_tagged(path, results[path], args.json) or status
    return status


def _warn(note: str) -> None:
    print(f"WARNING: {note}", file=sys.stderr)


def _error(photo: str, reason: str) -> None:
    """One photo's error, in the CLI's one-line form (sightline/cli.py), naming the photo."""
    from sightline.cli import report_error

    report_error(f"{photo}: {reason}")


def _photo_paths(args: argparse.Namespace) -> list[str]:
    from sightline.cli import CliError

    paths = list(args.photos)
    if args.from_file:
        try:
            text = sys.stdin.read() if args.from_file == "-" else Path(args.from_file).read_text()
        except OSError as exc:
            raise CliError(f"cannot read {args.from_file}: {exc.strerror}") from None
        listed = [line.strip() for line in text.splitlines() if line.strip()]
        if not listed and not paths:
            where = "standard input" if args.from_file == "-" else args.from_file
            raise CliError(f"--from {where}: no photo paths in it (one a line)")
        paths += listed
    if not paths:
        raise CliError("no photos given (PHOTO... or --from FILE)")
    return paths


def _check_writable(flag: str, out: str | None) -> None:
    """CliError unless OUT's folder exists and can be written (an existing OUT is replaced)."""
    from sightline.cli import CliError

    if not out:
        return
    folder = Path(out).parent
    if Path(out).is_dir():
        raise CliError(f"{flag} {out} is a directory")
    if not folder.is_dir():
        raise CliError(f"{flag} {out}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {out}: folder {folder} is not writable")


def embed_photos(args: argparse.Namespace) -> int:
    """E.npy (N, D) float32 unit vectors of the photos that decoded, in input order; names.txt
    the path of each row. Reads each photo as the worker does (decode, model transform)."""
    import numpy as np

    from workers.inference import SceneLandmarkModel
    from workers.photos import PhotoError
    from workers.pipeline import prepare
    from workers.settings import Settings

    paths = _photo_paths(args)
    for flag, out in (("--out", args.out), ("--names", args.names)):
        _check_writable(flag, out)  # before the model runs, not after
    s = Settings.from_env()
    model = SceneLandmarkModel.from_settings(s)
    model.load()
    assert model.meta is not None
    if not model.meta.trained:
        _warn("untrained network: these embeddings are noise, fit only for plumbing tests")
    rows: list[np.ndarray] = []
    names: list[str] = []
    failed: list[dict[str, str]] = []
    for lo in range(0, len(paths), s.batch_size):  # one forward pass per batch
        batch, crops = [], []
        for path in paths[lo : lo + s.batch_size]:
            try:
                crops.append(
                    prepare(
                        read_photo_file(path, s.max_object_bytes), model, max_pixels=s.max_pixels
                    ).photo.crop
                )
                batch.append(path)
            except OSError as exc:
                failed.append({"photo": path, "error": f"cannot read: {exc.strerror}"})
            except PhotoError as exc:
                failed.append({"photo": path, "error": str(exc)})
        if crops:
            _probs, embs = model.predict(crops)
            rows.extend(np.asarray(embs, dtype=np.float32))
            names.extend(batch)
    nothing = f"no photo embedded; {args.out} not written"
    if not rows and len(failed) == 1:  # one bad photo: one line, its reason and the outcome
        _error(failed[0]["photo"], f"{failed[0]['error']}; {nothing}")
        return 2
    for f in failed:
        _error(f["photo"], f"skipped: {f['error']}")
    dim = int(model.meta.embedding_dim)
    if not rows:  # an empty E.npy would pass for a result downstream
        from sightline.cli import report_error

        report_error(nothing)
        return 2
    np.save(args.out, np.stack(rows).astype(np.float32))
    if args.names:
        Path(args.names).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    summary = {
        "out": args.out,
        "names": args.names,
        "photos": len(names),
        "dim": dim,
        "model_version": model.meta.model_version,
        "trained": model.meta.trained,
        "failed": failed,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{len(names)} embedding(s) of dim {dim} from model {model.meta.model_version} "
            f"-> {args.out}"
            + (f" (rows named in {args.names})" if args.names else "")
            + (f"; {len(failed)} photo(s) skipped" if failed else "")
        )
    return 2 if failed else 0


def _print_tagged(path: str, result: dict, as_json: bool) -> int:
    """Print one photo's tags on stdout, or its error (--json: on stdout as one object, else
    one line on stderr); returns 2 for an error, else 0."""
    if as_json:
        print(json.dumps({"photo": path, **result}))
    elif "error" in result:
        _error(path, result["error"])
    else:
        top = ", ".join(f"{c['class']} {c['probability']:.3f}" for c in result["scenes"])
        albums = ", ".join(f"{a['album']} {a['score']:.3f}" for a in result["albums"])
        marks = ", ".join(f"{m['landmark_id']} {m['score']:.3f}" for m in result["landmarks"])
        print(
            f"{path}: {top}\n    albums: {albums}" + (f"\n    landmarks: {marks}" if marks else "")
        )
    return 2 if "error" in result else 0
