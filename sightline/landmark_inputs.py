"""Reading the landmark commands' input files, with one-line errors for bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from sightline.cli import CliError


def load_array(path: str | None, what: str, ndim: int, *, integer: bool = False) -> Any:
    """A .npy file (never unpickled) of the given rank."""
    import numpy as np

    if path is None:
        return None
    try:
        a = np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{what}: no such file {path}") from None
    except OSError as exc:  # a folder, no permission
        raise CliError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except EOFError:
        raise CliError(f"{what}: {path} is empty, not a .npy array") from None
    except ValueError as exc:
        # numpy's text for a foreign file advises allow_pickle, which an array never needs.
        reason = "" if "allow_pickle" in str(exc) else f" ({exc})"
        raise CliError(f"{what}: {path} is not a .npy array{reason}") from None
    if a.ndim != ndim:
        raise CliError(f"{what}: {path} has shape {a.shape}, expected {ndim} dimensions")
    if integer and a.dtype.kind not in "iu":
        raise CliError(f"{what}: {path} must hold integer labels, not {a.dtype}")
    if not integer and a.dtype.kind != "f":
        raise CliError(f"{what}: {path} must hold floats, not {a.dtype}")
    if not integer and what != "gps" and not np.isfinite(a).all():
        raise CliError(f"{what}: {path} contains NaN or infinity")
    return a


def load_embeddings(path: str, what: str = "embeddings") -> Any:
    """(N, D) float32 unit vectors (re-normalised: stored vectors may drift in float16)."""
    from models.centroids import l2_normalise

    return l2_normalise(load_array(path, what, 2))


def same_length(**arrays: Any) -> None:
    sizes = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(sizes.values())) > 1:
        raise CliError(
            "inputs differ in length: " + ", ".join(f"{k} {n}" for k, n in sizes.items())
        )


def load_gps(path: str | None, n: int) -> Any:
    g = load_array(path, "gps", 2)
    if g is not None and (g.shape != (n, 2)):
        raise CliError(f"gps: {path} has shape {g.shape}, expected ({n}, 2) lat, lon")
    return g


def read_landmarks_csv(path: str) -> list[dict[str, Any]]:
    """Rows of id,name,city,country,lat,lon (city, country, lat, lon may be empty)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"landmarks: cannot read {path}: {exc.strerror}") from None
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"id", "name"} <= set(reader.fieldnames):
        raise CliError(f"landmarks: {path} needs a header with at least id,name")
    rows, seen = [], set()
    for n, row in enumerate(reader, start=2):
        lid = (row.get("id") or "").strip()
        if not lid:
            raise CliError(f"landmarks: {path} line {n} has no id")
        if lid in seen:
            raise CliError(f"landmarks: {path} lists id {lid} twice")
        seen.add(lid)
        for key in ("lat", "lon"):
            value = (row.get(key) or "").strip()
            try:
                row[key] = float(value) if value else None
            except ValueError:
                raise CliError(
                    f"landmarks: {path} line {n}: {key} {value!r} is not a number"
                ) from None
        for key, limit in (("lat", 90), ("lon", 180)):
            if row[key] is not None and abs(row[key]) > limit:
                raise CliError(f"landmarks: {path} line {n}: {key} {row[key]} out of range")
        rows.append({**row, "id": lid, "name": (row.get("name") or "").strip()})
    return rows


def truth_indices(labels: Any, landmark_ids: Any) -> Any:
    """Labels (-1: not a landmark) -> release landmark indices; unknown landmarks -> -2."""
    import numpy as np

    from models.landmark_eval import NONE, UNKNOWN

    pos = {str(x): i for i, x in enumerate(landmark_ids)}
    return np.array(
        [NONE if int(v) == -1 else pos.get(str(int(v)), UNKNOWN) for v in labels], dtype=np.int64
    )


def read_train_counts(path: str, landmark_ids: Any) -> Any:
    """Per release landmark, its training photo count from a CSV (id,count); -1 unknown."""
    import numpy as np

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"train counts: cannot read {path}: {exc.strerror}") from None
    reader = csv.DictReader(text.splitlines())
    fields = set(reader.fieldnames or ())
    id_col = "landmark_id" if "landmark_id" in fields else "id"
    count_col = "count" if "count" in fields else "photos"
    if not {id_col, count_col} <= fields:
        raise CliError(f"train counts: {path} needs columns id,count")
    counts: dict[str, int] = {}
    for n, row in enumerate(reader, start=2):
        try:
            counts[row[id_col].strip()] = int(row[count_col])
        except (TypeError, ValueError):
            raise CliError(f"train counts: {path} line {n}: count is not an integer") from None
    return np.array([counts.get(str(x), -1) for x in landmark_ids], dtype=np.int64)


def load_release_file(path: str) -> Any:
    """A release file, or a one-line CliError."""
    from models.release import ReleaseError, load_release

    try:
        return load_release(path)
    except ReleaseError as exc:
        raise CliError(str(exc)) from None


def load_labelled_set(release_path: str, embeddings: str, labels: str, gps: str | None) -> tuple:
    """(release, embeddings, labels, gps) for calibration and evaluation, checked together."""
    release = load_release_file(release_path)
    e = load_embeddings(embeddings)
    if e.shape[1] != release.embedding_dim:
        raise CliError(f"embeddings have dim {e.shape[1]}, release {release.embedding_dim}")
    y = load_array(labels, "labels", 1, integer=True)
    if len(y) != len(e):
        raise CliError(f"{len(y)} labels for {len(e)} embeddings")
    return release, e, y, load_gps(gps, len(e))


def load_corrections(path: str, release: Any) -> tuple[Any, Any, Any, dict[str, int]]:
    """Landmark corrections (`sightline corrections export --json` or `--csv`) as a labelled
    set for ``release``: (embeddings (N, D), truth (N,) release indices or -1, gps (N, 2)
    NaN where unknown, counts).

    One row per corrected photo of the release's model: a photo its owner added to a
    landmark of the release is a positive for it; a photo with only hidden landmarks is
    not-a-landmark (a hidden match is a false positive). Other models' photos, photos with
    no embedding and landmarks the release lacks are skipped and counted.
    """
    import numpy as np

    from models.landmark_eval import NONE

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"corrections: cannot read {path}: {exc.strerror}") from None
    try:
        if text.lstrip().startswith("{"):
            rows = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
            if not all(isinstance(r, dict) for r in rows):
                raise CliError(f"corrections: {path} is not JSON lines of one object each")
            columns = set(rows[0])
        else:
            reader = csv.DictReader(text.splitlines())
            rows = list(reader)
            columns = set(reader.fieldnames or ())  # a CSV export has its header, rows or not
    except json.JSONDecodeError as exc:
        raise CliError(f"corrections: {path} is not JSON lines: {exc}") from None
    need = {"photo_id", "kind", "label", "verdict", "model_version", "embedding"}
    if text.strip() and not need <= columns:
        raise CliError(f"corrections: {path} needs the columns of `sightline corrections export`")
    pos = {str(x): i for i, x in enumerate(release.landmark_ids)}
    counts = dict.fromkeys(
        ("rows", "other_model", "no_embedding", "unknown_landmark", "hidden", "added"), 0
    )
    photos: dict[tuple[str, str], dict[str, Any]] = {}
    for n, r in enumerate(rows, start=1):
        if r.get("kind") != "landmark":
            continue
        counts["rows"] += 1
        if r.get("model_version") != release.model_version:
            counts["other_model"] += 1
            continue
        try:
            emb = _embedding(r["embedding"])
        except (TypeError, ValueError):
            counts["no_embedding"] += 1
            continue
        if emb.shape != (release.embedding_dim,) or not np.isfinite(emb).all():
            counts["no_embedding"] += 1
            continue
        verdict, label = r.get("verdict"), str(r.get("label"))
        if verdict not in ("hide", "add"):
            raise CliError(f"corrections: {path} row {n}: verdict {verdict!r}")
        if verdict == "add" and label not in pos:
            counts["unknown_landmark"] += 1
            continue
        key = (str(r.get("owner")), str(r["photo_id"]))
        photo = photos.setdefault(
            key, {"embedding": emb, "gps": (_coord(r, "gps_lat"), _coord(r, "gps_lon"))}
        )
        if verdict == "add":
            photo.setdefault("added", pos[label])  # the first added landmark, by label order
    e = np.zeros((len(photos), release.embedding_dim), np.float32)
    truth = np.full(len(photos), NONE, np.int64)
    gps = np.full((len(photos), 2), np.nan)
    for i, photo in enumerate(photos.values()):
        e[i], gps[i] = photo["embedding"], photo["gps"]
        truth[i] = photo.get("added", NONE)
    counts["added"] = int((truth != NONE).sum())
    counts["hidden"] = int((truth == NONE).sum())
    from models.centroids import l2_normalise

    return l2_normalise(e) if len(e) else e, truth, gps, counts


def _embedding(value: Any) -> Any:
    """An exported embedding as a float32 vector: a JSON array (`--json`), or its text
    (`--csv`, and exports that wrote pgvector text); ValueError or TypeError for none."""
    import numpy as np

    if isinstance(value, str):
        value = json.loads(value)  # a JSONDecodeError is a ValueError
    if not isinstance(value, list):
        raise TypeError(f"embedding is {type(value).__name__}, not a list")
    return np.asarray(value, dtype=np.float32)


def _coord(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    try:
        return float(value) if value not in (None, "") else float("nan")
    except (TypeError, ValueError):
        return float("nan")
