"""Photo writes: a batch of photos in one round trip (`sightline_write_photos`), each photo
its own sub-transaction, and the check for tasks a newer stored event already decided.

Every write is an idempotent upsert keyed by (bucket, key), guarded by the event's S3
sequencer: an older event never overwrites a newer one, and a newer delete wins (its row
stays as a tombstone). Release loading is `workers/releases.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from workers.pgtext import clean_message
from workers.pipeline import TagResult

_IDENTITY = ("owner", "bucket", "key", "version_id", "etag", "size", "sequencer", "event_time")


def stale_tasks(cur: Any, tasks: list[Mapping[str, Any]]) -> set[int]:
    """Indexes of tasks already decided: by a newer stored event, or by a newer task for the
    same key in this batch. One query; each task is judged by its own sequencer (never by
    its key: Put, Delete, Put of one key leaves the second Put live).

    Tasks must be storable (workers.pgtext.unstorable): NUL cannot travel in ``text[]``.
    """
    if not tasks:
        return set()
    cur.execute(
        "SELECT t.n - 1 FROM photos p JOIN unnest(%s::text[], %s::text[], %s::text[], "
        "%s::timestamptz[]) WITH ORDINALITY AS t(bucket, key, seq, at, n) "
        "ON p.bucket = t.bucket AND p.key = t.key "
        "WHERE NOT sightline_not_older(t.seq, t.at, p.sequencer, p.event_time)",
        (
            [t["bucket"] for t in tasks],
            [t["key"] for t in tasks],
            [t.get("sequencer") for t in tasks],
            [t.get("event_time") for t in tasks],
        ),
    )
    stale = {int(n) for (n,) in cur.fetchall()}
    return stale | superseded_in_batch(tasks)


def not_older(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """sightline_not_older() in Python: sequencers when both have one (padded to one width,
    so string order is S3's order), else event times, else True."""
    if new.get("sequencer") and old.get("sequencer"):
        return new["sequencer"] >= old["sequencer"]
    if new.get("event_time") and old.get("event_time"):
        return _when(new["event_time"]) >= _when(old["event_time"])
    return True


def _when(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def superseded_in_batch(tasks: list[Mapping[str, Any]]) -> set[int]:
    """Indexes of tasks with a strictly newer task for the same key in the same batch."""
    by_key: dict[tuple[str, str], list[int]] = {}
    for i, t in enumerate(tasks):
        by_key.setdefault((t["bucket"], t["key"]), []).append(i)
    return {
        i
        for group in by_key.values()
        for i in group
        if any(not not_older(tasks[i], tasks[j]) for j in group if j != i)
    }


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
        "warning": clean_message("; ".join(result.exif.warnings)),
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
    return {**_identity(task), "status": status, "error": clean_message(reason)}


def write_photos(cur: Any, items: list[dict[str, Any]]) -> list[tuple[int | None, str]]:
    """Write a batch in one round trip; per item (photo id or None, outcome).

    Each photo is its own sub-transaction: one bad row never loses the others.
    """
    if not items:
        return []
    try:
        payload = json.dumps(items, allow_nan=False)
    except (TypeError, ValueError):
        return _write_encodable(cur, items)
    cur.execute(
        "SELECT idx, photo_id, outcome FROM sightline_write_photos(%s::jsonb) ORDER BY idx",
        (payload,),
    )
    return [(pid, outcome) for _, pid, outcome in cur.fetchall()]


def _write_encodable(cur: Any, items: list[dict[str, Any]]) -> list[tuple[int | None, str]]:
    """A batch with an item JSON cannot carry (NaN or infinity, which JSON and the photo
    tables have no place for, or a value that is not JSON): that item is refused alone, the
    others written, as the batch's one parameter would otherwise fail them all."""
    refused: dict[int, str] = {}
    for n, item in enumerate(items):
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError) as exc:
            refused[n] = f"error: cannot store {item.get('bucket')}/{item.get('key')}: {exc}"
    written = iter(write_photos(cur, [x for n, x in enumerate(items) if n not in refused]))
    return [(None, refused[n]) if n in refused else next(written) for n in range(len(items))]
