"""Postgres writes for one photo, in one transaction, guarded by the event's order.

Every write is an idempotent upsert keyed by (bucket, key): an older event never
overwrites a newer one, and a newer delete wins (its row stays as a tombstone).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from models.landmarks import LandmarkIndex, Thresholds
from workers.pipeline import LiveRelease, TagResult

_IDENTITY = ("owner", "bucket", "key", "version_id", "etag", "size", "sequencer", "event_time")
_THRESHOLD_KEYS = frozenset(Thresholds.__dataclass_fields__)


def stale_keys(cur: Any, tasks: list[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """The (bucket, key) of tasks a newer stored event already decided: one query."""
    if not tasks:
        return set()
    cur.execute(
        "SELECT p.bucket, p.key FROM photos p JOIN unnest(%s::text[], %s::text[], %s::text[], "
        "%s::timestamptz[]) AS t(bucket, key, seq, at) ON p.bucket = t.bucket AND p.key = t.key "
        "WHERE NOT sightline_not_older(t.seq, t.at, p.sequencer, p.event_time)",
        (
            [t["bucket"] for t in tasks],
            [t["key"] for t in tasks],
            [t.get("sequencer") for t in tasks],
            [t.get("event_time") for t in tasks],
        ),
    )
    return {(b, k) for b, k in cur.fetchall()}


def _identity(task: Mapping[str, Any]) -> dict[str, Any]:
    return {k: task.get(k) for k in _IDENTITY}


def tagged_item(task: Mapping[str, Any], result: TagResult) -> dict[str, Any]:
    """One tagged photo as sightline_write_photos() takes it."""
    taken = result.exif.taken_at
    gps = result.exif.gps or (None, None)
    return {
        **_identity(task),
        "status": "tagged",
        "error": None,
        "taken_at": taken.isoformat() if taken and taken.tzinfo else None,
        "taken_at_local": taken.isoformat() if taken and not taken.tzinfo else None,
        "gps_lat": gps[0],
        "gps_lon": gps[1],
        "width": result.photo.width,
        "height": result.photo.height,
        "camera": result.exif.camera,
        "model_version": result.model_version,
        "model_trained": result.trained,
        "scene_trained": result.scene_trained,
        "embedding_trained": result.embedding_trained,
        "embedding": np.asarray(result.embedding, dtype=np.float32).tolist(),
        "scene_probs": np.asarray(result.probs, dtype=np.float32).tolist(),
        "indoor": result.indoor,
        "scenes": [[c, p] for c, p in result.scenes],
        "albums": [[a, sc] for a, sc in result.albums],
        "matches": [[rel, lid, sc] for rel, ms in result.matches.items() for lid, sc in ms],
    }


def status_item(task: Mapping[str, Any], status: str, reason: str | None) -> dict[str, Any]:
    """A failed, gone or deleted photo: its tags are dropped, the row stays."""
    return {**_identity(task), "status": status, "error": reason}


def write_photos(cur: Any, items: list[dict[str, Any]]) -> list[tuple[int | None, str]]:
    """Write a batch in one round trip; per item (photo id or None, outcome).

    Each photo is its own sub-transaction: one bad row never loses the others.
    """
    if not items:
        return []
    cur.execute(
        "SELECT idx, photo_id, outcome FROM sightline_write_photos(%s::jsonb) ORDER BY idx",
        (json.dumps(items),),
    )
    return [(pid, outcome) for _, pid, outcome in cur.fetchall()]


def write_tagged(cur: Any, task: Mapping[str, Any], result: TagResult) -> int | None:
    """Upsert one tagged photo with its tags; None when a newer event already won."""
    return _one(write_photos(cur, [tagged_item(task, result)]))


def write_status(
    cur: Any, task: Mapping[str, Any], status: str, reason: str | None = None
) -> int | None:
    """Record a photo as failed, gone or deleted; None when a newer event already won."""
    return _one(write_photos(cur, [status_item(task, status, reason)]))


def _one(results: list[tuple[int | None, str]]) -> int | None:
    ((pid, outcome),) = results
    if outcome.startswith("error: "):
        raise WriteError(outcome.removeprefix("error: "))
    return pid


class WriteError(RuntimeError):
    """A photo row the database refused (a bug or bad data, not a transient fault)."""


def as_array(vector: Any) -> np.ndarray:
    """pgvector's Vector (or a plain sequence) as float32."""
    values = vector.to_numpy() if hasattr(vector, "to_numpy") else vector
    return np.asarray(values, dtype=np.float32)


def load_live_releases(cur: Any, cache: dict[str, LiveRelease]) -> list[LiveRelease]:
    """The releases new photos are matched against: the active one and any being re-tagged.

    ``cache`` keeps loaded releases by version, so only a new release costs a load.
    """
    cur.execute(
        "SELECT version, model_version, embedding_dim, thresholds FROM releases "
        "WHERE status IN ('active', 'retagging', 'ready') ORDER BY version"
    )
    live = []
    for version, model_version, dim, thresholds in cur.fetchall():
        if version not in cache:
            cache[version] = LiveRelease(
                version, model_version, load_index(cur, version, dim, thresholds)
            )
        live.append(cache[version])
    for stale in set(cache) - {r.version for r in live}:
        del cache[stale]
    return live


def load_index(cur: Any, version: str, dim: int, thresholds: Any) -> LandmarkIndex:
    th = thresholds if isinstance(thresholds, dict) else json.loads(thresholds)
    cur.execute(
        "SELECT landmark_id, lat, lon FROM landmarks WHERE release = %s ORDER BY landmark_id",
        (version,),
    )
    rows = cur.fetchall()
    ids = [r[0] for r in rows]
    pos = {lid: i for i, lid in enumerate(ids)}

    def vectors(table: str) -> tuple[np.ndarray, np.ndarray]:
        cur.execute(f"SELECT landmark_id, embedding FROM {table} WHERE release = %s", (version,))
        got = cur.fetchall()
        vecs = np.array([as_array(e) for _, e in got], dtype=np.float32)
        return vecs.reshape(len(got), dim), np.array([pos[lid] for lid, _ in got], dtype=np.int64)

    centroids, c_owner = vectors("centroids")
    refs, r_owner = vectors("landmark_references")
    return LandmarkIndex(
        landmark_ids=ids,
        lats=np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64),
        lons=np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
        centroids=centroids,
        centroid_landmarks=c_owner,
        references=refs,
        reference_landmarks=r_owner,
        thresholds=Thresholds(
            **{k: float(v) for k, v in th.items() if k in Thresholds.__dataclass_fields__}
        ),
    )
