"""A landmark release as one versioned file: a ``.npz`` of plain arrays plus a JSON manifest.

Loaded with ``allow_pickle=False``: a release file can never run code. Arrays:

    manifest             0-d str   JSON: format, format_version, version, embedding_dim,
                                   model_version, thresholds, counts, parent, notes
    landmark_ids         (L,) str  unique ids (the labels' values as text)
    names, cities, countries (L,) str
    lats, lons           (L,) f8   NaN where unknown (such a landmark never matches by GPS)
    train_photos         (L,) i8   photos the centroids came from (-1: unknown)
    centroids            (C, D) f4 unit vectors
    centroid_landmarks   (C,) i8   index into landmark_ids
    references           (R, D) f4 unit vectors
    reference_landmarks  (R,) i8   index into landmark_ids
    name_<locale>        (L,) str  optional: the landmark's name in a locale ('' for none),
                                   from the landmark CSV's name_<locale> columns
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.landmarks import LandmarkIndex, Thresholds

FORMAT = "sightline-landmark-release"
FORMAT_VERSION = 1
_ARRAYS = (
    "landmark_ids",
    "names",
    "cities",
    "countries",
    "lats",
    "lons",
    "train_photos",
    "centroids",
    "centroid_landmarks",
    "references",
    "reference_landmarks",
)

# name_ru, name_pt-BR, name_zh_Hant -> locales ru, pt-br, zh-hant.
_NAME_COLUMN = re.compile(r"^name_([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?)$")


def locale_of(column: str) -> str | None:
    """The locale a ``name_<locale>`` column names (lower case, '-'), or None."""
    m = _NAME_COLUMN.match(column)
    return m.group(1).lower().replace("_", "-") if m else None


class ReleaseError(ValueError):
    """A release file that cannot be used, with the reason in one line."""


@dataclass(frozen=True)
class Release:
    version: str
    model_version: str
    thresholds: Thresholds
    landmark_ids: np.ndarray
    names: np.ndarray
    cities: np.ndarray
    countries: np.ndarray
    lats: np.ndarray
    lons: np.ndarray
    train_photos: np.ndarray
    centroids: np.ndarray
    centroid_landmarks: np.ndarray
    references: np.ndarray
    reference_landmarks: np.ndarray
    parent: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    # locale -> (L,) names in that locale, '' where the landmark has none
    localized_names: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def embedding_dim(self) -> int:
        return int(self.centroids.shape[1])

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "embedding_dim": self.embedding_dim,
            "model_version": self.model_version,
            "thresholds": self.thresholds.to_dict(),
            "counts": {
                "landmarks": len(self.landmark_ids),
                "centroids": len(self.centroids),
                "references": len(self.references),
            },
            "parent": self.parent,
            "notes": self.notes,
        }

    def content_hash(self) -> str:
        """sha256 over the arrays and the matching-relevant manifest fields."""
        h = hashlib.sha256()
        h.update(json.dumps([self.model_version, self.thresholds.to_dict()]).encode())
        for name in _ARRAYS:
            a = np.ascontiguousarray(getattr(self, name))
            h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode())
            h.update(a.tobytes())
        # Only when present, so a release without translations keeps its earlier hash.
        for locale in sorted(self.localized_names):
            h.update(f"name_{locale}".encode())
            h.update(json.dumps(self.localized_names[locale].tolist()).encode())
        return h.hexdigest()

    def with_thresholds(self, thresholds: Thresholds, *, version: str, **notes: Any) -> Release:
        return replace(
            self, thresholds=thresholds, version=version, parent=self.version, notes=notes
        )

    def index(self) -> LandmarkIndex:
        return LandmarkIndex(
            landmark_ids=[str(x) for x in self.landmark_ids],
            lats=self.lats,
            lons=self.lons,
            centroids=self.centroids,
            centroid_landmarks=self.centroid_landmarks,
            references=self.references,
            reference_landmarks=self.reference_landmarks,
            thresholds=self.thresholds,
        )

    def validate(self) -> Release:
        """Raise ReleaseError unless shapes, ids and vectors are consistent."""
        n = len(self.landmark_ids)
        for name in ("names", "cities", "countries", "lats", "lons", "train_photos"):
            if len(getattr(self, name)) != n:
                raise ReleaseError(f"release array {name} has {len(getattr(self, name))} rows")
        for locale, names in self.localized_names.items():
            if locale_of(f"name_{locale}") != locale or len(names) != n:
                raise ReleaseError(f"release names for locale {locale!r} do not fit")
        if len(set(self.landmark_ids.tolist())) != n:
            raise ReleaseError("release landmark ids are not unique")
        if not self.version or not self.model_version:
            raise ReleaseError("release needs a version and a model version")
        for vecs, owners, what in (
            (self.centroids, self.centroid_landmarks, "centroids"),
            (self.references, self.reference_landmarks, "references"),
        ):
            if vecs.ndim != 2 or len(vecs) != len(owners):
                raise ReleaseError(f"release {what} must be (rows, dim) with one owner per row")
            if vecs.shape[1] != self.centroids.shape[1]:
                raise ReleaseError(f"release {what} have dim {vecs.shape[1]}")
            if len(owners) and (owners.min() < 0 or owners.max() >= n):
                raise ReleaseError(f"release {what} name a landmark index out of range")
            if not np.isfinite(vecs).all():
                raise ReleaseError(f"release {what} contain NaN or infinity")
            norms = np.linalg.norm(vecs, axis=1)
            if len(norms) and np.abs(norms - 1).max() > 1e-3:
                raise ReleaseError(f"release {what} are not unit vectors")
        ok = np.isnan(self.lats) | (np.abs(self.lats) <= 90)
        ok &= np.isnan(self.lons) | (np.abs(self.lons) <= 180)
        if not ok.all():
            raise ReleaseError("release landmark coordinates out of range")
        return self


def refuse_untrained_embeddings(
    model_version: str, *, scene_trained: bool | None, embedding_trained: bool | None
) -> None:
    """Raise ReleaseError when the embeddings came from an untrained embedding head beside a
    real scene head: its centroids would match noise beside real scene albums.

    ``None`` means unknown (embeddings of a model this process has no record of). A network
    with no trained head at all is the explicit untrained mode of demos and tests, whose
    every output is already marked untrained (see CheckpointMeta.serves_landmarks).
    """
    if embedding_trained is False and scene_trained is not False:
        raise ReleaseError(
            f"release refused: its embeddings come from model {model_version!r}, whose "
            "landmark embedding head is untrained (only its scene head is real), so its "
            "centroids would match noise; train the head with `sightline train landmarks` "
            "and build the release from that checkpoint's embeddings"
        )


def _text(values) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=np.str_)


def make_release(
    *,
    version: str,
    model_version: str,
    thresholds: Thresholds,
    landmarks: list[dict[str, Any]],
    centroids: np.ndarray,
    centroid_landmarks: np.ndarray,
    references: np.ndarray | None = None,
    reference_landmarks: np.ndarray | None = None,
    notes: dict[str, Any] | None = None,
) -> Release:
    """A validated release from landmark rows (id, name, city, country, lat, lon, photos)."""
    dim = np.asarray(centroids).shape[1]

    def coord(row: dict, key: str) -> float:
        v = row.get(key)
        return float(v) if v not in (None, "") else np.nan

    return Release(
        version=version,
        model_version=model_version,
        thresholds=thresholds,
        landmark_ids=_text(r["id"] for r in landmarks),
        names=_text(r.get("name", "") for r in landmarks),
        cities=_text(r.get("city", "") for r in landmarks),
        countries=_text(r.get("country", "") for r in landmarks),
        lats=np.array([coord(r, "lat") for r in landmarks], dtype=np.float64),
        lons=np.array([coord(r, "lon") for r in landmarks], dtype=np.float64),
        train_photos=np.array([int(r.get("photos", -1)) for r in landmarks], dtype=np.int64),
        centroids=np.asarray(centroids, dtype=np.float32),
        centroid_landmarks=np.asarray(centroid_landmarks, dtype=np.int64),
        references=np.asarray(
            references if references is not None else np.zeros((0, dim)), dtype=np.float32
        ),
        reference_landmarks=np.asarray(
            reference_landmarks if reference_landmarks is not None else [], dtype=np.int64
        ),
        notes=notes or {},
        localized_names={
            locale: _text((r.get(col) or "").strip() for r in landmarks)
            for col in sorted({k for r in landmarks for k in r})
            if (locale := locale_of(col))
        },
    ).validate()


def save_release(release: Release, path: str | Path) -> str:
    """Write the release file; returns its content hash."""
    release.validate()
    manifest = {**release.manifest(), "content_sha256": release.content_hash()}
    arrays = {name: getattr(release, name) for name in _ARRAYS}
    arrays.update({f"name_{k}": v for k, v in release.localized_names.items()})
    buf = io.BytesIO()
    np.savez(buf, manifest=np.array(json.dumps(manifest)), **arrays)
    Path(path).write_bytes(buf.getvalue())
    return manifest["content_sha256"]


def load_release(path: str | Path) -> Release:
    """Read and validate a release file (never unpickles)."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            manifest = json.loads(str(data["manifest"]))
            arrays = {name: data[name] for name in _ARRAYS}
            localized = {locale: data[key] for key in data.files if (locale := locale_of(key))}
    except FileNotFoundError:
        raise ReleaseError(f"no release file at {path}") from None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        # numpy's text for a non-archive advises allow_pickle, which a release never needs.
        reason = "not an .npz archive" if "allow_pickle" in str(exc) else str(exc)
        reason = "empty file" if isinstance(exc, EOFError) else reason
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else reason
        raise ReleaseError(f"{path}: not a sightline release file ({reason})") from None
    if manifest.get("format") != FORMAT:
        raise ReleaseError(f"{path} is not a sightline release file")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ReleaseError(f"{path}: release format {manifest.get('format_version')} unsupported")
    release = Release(
        version=str(manifest["version"]),
        model_version=str(manifest["model_version"]),
        thresholds=Thresholds.from_dict(manifest["thresholds"]),
        parent=manifest.get("parent"),
        notes=manifest.get("notes") or {},
        localized_names=localized,
        **arrays,
    ).validate()
    if int(manifest["embedding_dim"]) != release.embedding_dim:
        raise ReleaseError(f"{path}: manifest dim differs from the centroids' dim")
    if manifest.get("content_sha256") not in (None, release.content_hash()):
        raise ReleaseError(f"{path}: content does not match its manifest hash (corrupt file)")
    return release
