"""Bytes to tags: decode, EXIF, one forward pass per batch, scene map, landmark matches.

Shared by the Celery task and `sightline tag`; no S3, broker or database here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.scenes import SceneMap
from workers.errors import MODEL_FAULT_PREFIX
from workers.exif import ExifFacts
from workers.inference import SceneLandmarkModel
from workers.photos import DecodedPhoto, PhotoError, decode
from workers.releases import LiveRelease


@dataclass
class TagResult:
    photo: DecodedPhoto
    exif: ExifFacts
    probs: np.ndarray  # (classes,)
    embedding: np.ndarray  # (dim,)
    scenes: list[tuple[str, float]]  # top-5 fine classes
    albums: list[tuple[str, float]]  # the albums the photo is filed in, best first
    indoor: float
    model_version: str
    scene_trained: bool  # per head: the scene labels are predictions
    embedding_trained: bool  # the embedding (and any landmark match) is one
    # release version -> [(landmark_id, score)], best first
    matches: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        """Both heads trained (the photo row's model_trained)."""
        return self.scene_trained and self.embedding_trained

    def to_json(self) -> dict:
        gps = self.exif.gps
        return {
            "format": self.photo.format,
            "width": self.photo.width,
            "height": self.photo.height,
            "taken_at": self.exif.taken_at.isoformat() if self.exif.taken_at else None,
            "gps": {"lat": gps[0], "lon": gps[1]} if gps else None,
            "camera": self.exif.camera,
            "warnings": list(self.exif.warnings),
            "scenes": [{"class": c, "probability": round(p, 6)} for c, p in self.scenes],
            "albums": [{"album": a, "score": round(s, 6)} for a, s in self.albums],
            "indoor": self.indoor >= 0.5,
            "indoor_probability": round(self.indoor, 6),
            "landmarks": [
                {"release": r, "landmark_id": lid, "score": round(s, 6)}
                for r, ms in self.matches.items()
                for lid, s in ms
            ],
            "model_version": self.model_version,
            "trained": self.trained,
            "heads": {
                "scene_trained": self.scene_trained,
                "embedding_trained": self.embedding_trained,
            },
        }


def album_scores(
    scene_map: SceneMap, probs: np.ndarray, k: int = 3
) -> list[list[tuple[str, float]]]:
    """The albums each row of (N, classes) probabilities is filed in, as a re-file does
    (`workers/retag.py`): the map's sift classes zeroed, the rest renormalised, then
    ``SceneMap.file`` (every album past its threshold, at most ``k``, best first)."""
    return scene_map.file(scene_map.renormalise(probs), k=k)


@dataclass(frozen=True)
class Prepared:
    """A decoded photo and its EXIF: the CPU/I-O half of tagging, done off the model."""

    photo: DecodedPhoto
    exif: ExifFacts


def prepare(data: bytes, model: SceneLandmarkModel, *, max_pixels: int) -> Prepared:
    """Decode to the model's input crop and read EXIF; raises PhotoError."""
    t = model.transform
    photo = decode(data, resize=t.resize, crop=t.crop, max_pixels=max_pixels)
    return Prepared(photo, photo.exif)


def infer(
    prepared: list[Prepared],
    model: SceneLandmarkModel,
    releases: Sequence[LiveRelease] = (),
    scene_map: SceneMap | None = None,
) -> list[TagResult]:
    """One forward pass for the batch, then scene map and landmark matches per photo.

    ``scene_map``: the map in force to file albums by (default: the model's own).
    """
    if not prepared:
        return []
    probs, embs = model.predict([p.photo.crop for p in prepared])
    meta, sm = model.meta, model.scene_map
    assert meta is not None and sm is not None
    scenes = sm.top_classes(probs, k=5)
    albums = album_scores(scene_map or sm, probs, k=model.max_albums)
    indoor = sm.indoor_probability(probs)
    gps = np.array(
        [p.exif.gps if p.exif.gps else (np.nan, np.nan) for p in prepared], dtype=np.float64
    )
    # A release built from another model's embeddings would match noise: skip it. So
    # would any release, for a real scene head beside an untrained embedding head.
    usable = [r for r in releases if r.model_version == meta.model_version]
    if not meta.serves_landmarks:
        usable = []
    matched = {r.version: (r.index, r.index.match(embs, gps)) for r in usable}
    return [
        TagResult(
            photo=p.photo,
            exif=p.exif,
            probs=probs[n],
            embedding=embs[n],
            scenes=scenes[n],
            albums=albums[n],
            indoor=float(indoor[n]),
            model_version=meta.model_version,
            scene_trained=meta.scene_head.trained,
            embedding_trained=meta.embedding_head.trained,
            matches={
                version: [(index.landmark_ids[m.landmark], m.score) for m in per_photo[n]]
                for version, (index, per_photo) in matched.items()
            },
        )
        for n, p in enumerate(prepared)
    ]


# The largest magnitude IEEE half precision holds: the photo tables store both vectors as
# halfvec (migration 0012).
HALF_MAX = 65504.0


def unstorable_output(result: TagResult) -> str | None:
    """Why a photo's network output cannot be stored, in one line; None when it can.

    A value that is NaN, infinite or beyond half precision's ±65,504 in the scene
    probabilities or the embedding (a network fault, e.g. an overflow at half precision on
    a GPU) fails that photo alone: written as one JSON parameter or one COPY with its batch,
    it would refuse the whole batch.
    """
    for name, values in (("scene probabilities", result.probs), ("embedding", result.embedding)):
        a = np.asarray(values, dtype=np.float64)
        if not (np.abs(a) <= HALF_MAX).all():  # NaN compares false
            return (
                f"{MODEL_FAULT_PREFIX}NaN, infinity or a value beyond half precision in the "
                f"{name} (model {result.model_version})"
            )
    return None


def analyse(
    datas: list[bytes],
    model: SceneLandmarkModel,
    releases: Sequence[LiveRelease] = (),
    *,
    max_pixels: int = 100_000_000,
) -> list[TagResult | PhotoError]:
    """Tag a batch of photos; a photo that cannot be decoded, or whose network output cannot
    be stored (``unstorable_output``), yields its PhotoError."""
    model.load()
    out: list[TagResult | PhotoError] = []
    good: list[Prepared] = []
    slots: list[int] = []
    for data in datas:
        try:
            good.append(prepare(data, model, max_pixels=max_pixels))
            slots.append(len(out))
            out.append(PhotoError("pending"))
        except PhotoError as exc:
            out.append(exc)
    for slot, result in zip(slots, infer(good, model, releases)):
        reason = unstorable_output(result)
        out[slot] = PhotoError(reason) if reason else result
    return out
