"""Photo writes: a batch of photos in one round trip (`sightline_write_photos`), each photo
its own sub-transaction, and the check for tasks a newer stored event already decided.

Every write is an idempotent upsert keyed by (bucket, key), guarded by the event's S3
sequencer: an older event never overwrites a newer one, and a newer delete wins (its row
stays as a tombstone). Release loading is `workers/releases.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from workers.pipeline import TagResult

_IDENTITY = ("owner", "bucket", "key", "version_id", "etag", "size", "sequencer", "event_time")


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
