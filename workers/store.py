"""Postgres writes for one photo, in one transaction, guarded by the event's order.

Every write is an idempotent upsert keyed by (bucket, key): an older event never
overwrites a newer one, and a newer delete wins (its row stays as a tombstone).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
from psycopg2.extras import execute_values

from models.landmarks import LandmarkIndex, Thresholds
from workers.pipeline import LiveRelease, TagResult

_GUARD = (
    "sightline_not_older(EXCLUDED.sequencer, EXCLUDED.event_time, "
    "photos.sequencer, photos.event_time)"
)
_IDENTITY = ("owner", "bucket", "key", "version_id", "etag", "size", "sequencer", "event_time")


def _identity(task: Mapping[str, Any]) -> tuple:
    return tuple(task.get(k) for k in _IDENTITY)


def is_stale(cur: Any, task: Mapping[str, Any]) -> bool:
    """True when the stored row already reflects a newer event for this key."""
    cur.execute(
        "SELECT NOT sightline_not_older(%s, %s, sequencer, event_time) "
        "FROM photos WHERE bucket = %s AND key = %s",
        (task.get("sequencer"), task.get("event_time"), task["bucket"], task["key"]),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def _split_time(taken: datetime | None) -> tuple[datetime | None, datetime | None]:
    if taken is None:
        return None, None
    return (taken, None) if taken.tzinfo else (None, taken)


def write_tagged(cur: Any, task: Mapping[str, Any], result: TagResult) -> int | None:
    """Upsert a tagged photo with its scenes, albums and matches; None when stale."""
    aware, local = _split_time(result.exif.taken_at)
    gps = result.exif.gps or (None, None)
    cur.execute(
        f"""
        INSERT INTO photos ({", ".join(_IDENTITY)}, status, error, attempts, taken_at,
            taken_at_local, gps_lat, gps_lon, width, height, camera, model_version,
            model_trained, embedding, scene_probs, indoor)
        VALUES ({", ".join(["%s"] * len(_IDENTITY))}, 'tagged', NULL, 1, %s, %s, %s, %s, %s,
            %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (bucket, key) DO UPDATE SET
            owner = EXCLUDED.owner, version_id = EXCLUDED.version_id, etag = EXCLUDED.etag,
            size = EXCLUDED.size, sequencer = EXCLUDED.sequencer,
            event_time = EXCLUDED.event_time, status = 'tagged', error = NULL,
            attempts = photos.attempts + 1, taken_at = EXCLUDED.taken_at,
            taken_at_local = EXCLUDED.taken_at_local, gps_lat = EXCLUDED.gps_lat,
            gps_lon = EXCLUDED.gps_lon, width = EXCLUDED.width, height = EXCLUDED.height,
            camera = EXCLUDED.camera, model_version = EXCLUDED.model_version,
            model_trained = EXCLUDED.model_trained, embedding = EXCLUDED.embedding,
            scene_probs = EXCLUDED.scene_probs, indoor = EXCLUDED.indoor, updated_at = now()
        WHERE {_GUARD}
        RETURNING id
        """,
        (
            *_identity(task),
            aware,
            local,
            gps[0],
            gps[1],
            result.photo.width,
            result.photo.height,
            result.exif.camera,
            result.model_version,
            result.trained,
            np.asarray(result.embedding, dtype=np.float32),
            [float(p) for p in result.probs],
            result.indoor,
        ),
    )
    row = cur.fetchone()
    if row is None:
        return None
    photo_id = row[0]
    _clear_tags(cur, photo_id)
    execute_values(
        cur,
        "INSERT INTO photo_scenes (photo_id, rank, class_name, probability) VALUES %s",
        [(photo_id, r + 1, c, p) for r, (c, p) in enumerate(result.scenes)],
    )
    if result.albums:
        execute_values(
            cur,
            "INSERT INTO photo_albums (photo_id, rank, album, score) VALUES %s",
            [(photo_id, r + 1, a, s) for r, (a, s) in enumerate(result.albums)],
        )
    rows = [(rel, photo_id, lid, s) for rel, ms in result.matches.items() for lid, s in ms]
    if rows:
        execute_values(
            cur,
            "INSERT INTO landmark_matches (release, photo_id, landmark_id, score) VALUES %s",
            rows,
        )
    return photo_id


def _clear_tags(cur: Any, photo_id: int) -> None:
    cur.execute("DELETE FROM photo_scenes WHERE photo_id = %s", (photo_id,))
    cur.execute("DELETE FROM photo_albums WHERE photo_id = %s", (photo_id,))
    cur.execute("DELETE FROM landmark_matches WHERE photo_id = %s", (photo_id,))


def write_status(
    cur: Any, task: Mapping[str, Any], status: str, reason: str | None = None
) -> int | None:
    """Record a photo as failed, gone or deleted (dropping its tags); None when stale."""
    cur.execute(
        f"""
        INSERT INTO photos ({", ".join(_IDENTITY)}, status, error, attempts)
        VALUES ({", ".join(["%s"] * len(_IDENTITY))}, %s, %s, 1)
        ON CONFLICT (bucket, key) DO UPDATE SET
            owner = EXCLUDED.owner, version_id = EXCLUDED.version_id, etag = EXCLUDED.etag,
            size = EXCLUDED.size, sequencer = EXCLUDED.sequencer,
            event_time = EXCLUDED.event_time, status = EXCLUDED.status,
            error = EXCLUDED.error, attempts = photos.attempts + 1, updated_at = now(),
            embedding = NULL,
            scene_probs = NULL, indoor = NULL
        WHERE {_GUARD}
        RETURNING id
        """,
        (*_identity(task), status, reason),
    )
    row = cur.fetchone()
    if row is None:
        return None
    _clear_tags(cur, row[0])
    return row[0]


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
        # pgvector >= 0.3 returns Vector objects, not arrays.
        vecs = np.array([e.to_numpy() for _, e in got], dtype=np.float32)
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
