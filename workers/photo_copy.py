"""The set-based write path: a batch of photo rows by binary COPY into a session's staging
table, then one guarded upsert (``sightline_write_staged``, migration 0014).

Same input and output as ``workers.store.write_photos`` (items as ``tagged_item`` and
``status_item`` build them; per item (photo id or None, outcome)). If the set-based statement
refuses the batch (one row breaks a constraint), it is rolled back to a savepoint and the
batch goes through ``sightline_write_photos``, which isolates each photo: one bad row never
sinks the batch. An item this module cannot encode goes that way too.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg2

from workers.db import CONFLICTS
from workers.store import write_photos

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_TEXT_OID, _FLOAT4_OID = 25, 700
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_NAIVE = datetime(2000, 1, 1)

STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS sightline_stage (
    idx integer, owner text, bucket text, key text, version_id text, etag text, size bigint,
    sequencer text, event_time timestamptz, status text, error text, warning text,
    taken_at timestamptz, taken_at_local timestamp, gps_lat float8, gps_lon float8,
    width integer, height integer, camera text, model_version text, model_trained boolean,
    scene_trained boolean, embedding_trained boolean,
    embedding halfvec, scene_probs halfvec,  -- encoded half here: stored as they come
    indoor real, scene_names text[], scene_ps real[], album_names text[],
    album_scores real[], match_releases text[], match_ids text[], match_scores real[],
    occ integer NOT NULL DEFAULT 1  -- the round a repeated key is written in
) ON COMMIT DELETE ROWS
"""
_FIELDS = 33
_COLUMNS = (
    "idx, owner, bucket, key, version_id, etag, size, sequencer, event_time, status, error, "
    "warning, taken_at, taken_at_local, gps_lat, gps_lon, width, height, camera, "
    "model_version, model_trained, scene_trained, embedding_trained, embedding, scene_probs, "
    "indoor, scene_names, scene_ps, album_names, album_scores, match_releases, match_ids, "
    "match_scores"
)


class EncodeError(ValueError):
    """An item whose values cannot be COPYed (the per-photo path reports why)."""


def _text(v: Any) -> bytes:
    if v is None:
        return _NULL
    b = str(v).encode("utf-8")
    return struct.pack(">i", len(b)) + b


def _int(v: Any, fmt: str) -> bytes:
    if v is None:
        return _NULL
    size = struct.calcsize(fmt)
    return struct.pack(">i" + fmt[-1], size, int(v))


def _finite(v: Any) -> float:
    x = float(v)
    if not math.isfinite(x):  # Postgres would store it; the per-photo path refuses it
        raise ValueError(f"{x} is not a finite number")
    return x


def _float(v: Any, fmt: str) -> bytes:
    if v is None:
        return _NULL
    return struct.pack(">i" + fmt[-1], struct.calcsize(fmt), _finite(v))


def _bool(v: Any) -> bytes:
    return _NULL if v is None else struct.pack(">ib", 1, 1 if v else 0)


def _time(v: Any, *, aware: bool) -> bytes:
    if v is None:
        return _NULL
    t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    if aware:
        if t.tzinfo is None:
            raise EncodeError(f"time without an offset: {v!r}")
        delta = t - _PG_EPOCH
    else:
        delta = t.replace(tzinfo=None) - _PG_EPOCH_NAIVE
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return struct.pack(">iq", 8, micros)


def _struct(fmt: str) -> struct.Struct:
    """A compiled struct for ``fmt`` (one per array length seen: a handful)."""
    packer = _PACKERS.get(fmt)
    if packer is None:
        packer = _PACKERS[fmt] = struct.Struct(fmt)
    return packer


def _packer(fmt: str) -> Any:
    return _struct(fmt).pack


_PACKERS: dict[str, struct.Struct] = {}
# Up to this many floats, a list packs faster by struct than through numpy (the top-5
# scenes, album scores, matches).
_SMALL = 32


def _halfvec(v: Any) -> bytes:
    """pgvector's binary ``halfvec``: int16 dim, int16 zero, dim big-endian IEEE binary16.

    Each value is rounded to float32, then to half, ties to even: for float32 values (the
    worker's items) the bits the per-photo path's casts (real[] or vector to halfvec) store,
    so both paths write the same row, and half the bytes of float32 cross the wire. (A double
    that is not float32 the per-photo path rounds from its decimal text: within a float32
    step of a half tie the two can differ by one half step.) A value float32 or half cannot
    hold raises OverflowError (EncodeError: the per-photo path refuses that photo); NaN and
    infinity are left to the server, which refuses them, and the per-photo path then refuses
    that photo alone.
    """
    if v is None:
        return _NULL
    if not isinstance(v, list | tuple):
        v = np.asarray(v, dtype=np.float64).ravel().tolist()
    return _HALFVEC_HEAD.pack(4 + 2 * len(v), len(v), 0) + _halves(v)


def _halves(flat: Sequence[Any]) -> bytes:
    """Numbers as big-endian IEEE binary16, each rounded to float32 first, then to half (ties
    to even, as struct's "e" rounds), -0.0 as 0.0; OverflowError for a finite value beyond
    float32 or half, struct.error for what is not a number."""
    # struct.pack keeps its own cache of formats: batch-sized ones are not kept here
    wide = np.frombuffer(struct.pack(f"<{len(flat)}f", *flat), dtype="<f4") + np.float32(0.0)
    half = _to_half(wide)
    if not np.isfinite(half).all():  # NaN and infinity pass: the server refuses them
        over = np.isinf(half) & np.isfinite(wide)
        if over.any():
            raise OverflowError(f"{float(wide[over][0])!r} is beyond a half float's range")
    return half.byteswap().tobytes()


def _batch_halfvecs(items: Sequence[dict[str, Any]], field: str) -> list[bytes | None]:
    """Each item's ``field`` as ``_halfvec`` encodes it, converted in one step for the items
    whose value is a list of the batch's common length (the conversion's fixed cost is most
    of a row's); None for the others (no value: a failed or gone photo; another shape), and
    for every item if a value cannot be encoded: ``encode_row`` then says which."""
    values = [item.get(field) for item in items]
    lengths = [len(v) for v in values if isinstance(v, list) and v]
    n = max(set(lengths), key=lengths.count) if lengths else 0
    chosen = [i for i, v in enumerate(values) if isinstance(v, list) and len(v) == n and n]
    out: list[bytes | None] = [None] * len(items)
    if len(chosen) < 2:
        return out
    try:
        body = _halves([x for i in chosen for x in values[i]])
    except (TypeError, ValueError, OverflowError, struct.error):
        return out
    head = _HALFVEC_HEAD.pack(4 + 2 * n, n, 0)
    for k, i in enumerate(chosen):
        out[i] = head + body[2 * n * k : 2 * n * (k + 1)]
    return out


def _to_half(wide: np.ndarray) -> np.ndarray:
    """float32 to float16 (native order), round to nearest, ties to even, as numpy's
    ``astype`` rounds; through torch, whose conversion uses the CPU's F16C instructions:
    numpy converts subnormal halves (probabilities under 6.1e-5: more than half of a
    softmax's 365) in software, 17 us a row here against 0.4 (``sightline bench writes
    --stages`` shows the encode stage)."""
    import torch  # the worker has it loaded; imported here, not by processes that only read

    return torch.from_numpy(wide).to(torch.float16).numpy()


_HALFVEC_HEAD = struct.Struct(">ihh")


def _real_array(v: Any) -> bytes:
    if v is None:
        return _NULL
    if isinstance(v, list) and 0 < len(v) <= _SMALL:
        # top-5 scenes, album scores, matches: a few floats, each as (length 4, value)
        n = len(v)
        pairs = [4] * (2 * n)
        pairs[1::2] = [_finite(x) for x in v]
        return _packer(f">iiiiii{'if' * n}")(20 + 8 * n, 1, 0, _FLOAT4_OID, n, 1, *pairs)
    a = np.asarray(v, dtype=np.float32).ravel()
    if not np.isfinite(a).all():
        raise ValueError("NaN or infinity in a real array")
    if not a.size:
        body = struct.pack(">iii", 0, 0, _FLOAT4_OID)
    else:
        elems = np.empty(a.size, dtype=[("len", ">i4"), ("v", ">f4")])
        elems["len"], elems["v"] = 4, a
        body = struct.pack(">iiiii", 1, 0, _FLOAT4_OID, a.size, 1) + elems.tobytes()
    return struct.pack(">i", len(body)) + body


def _text_array(values: Sequence[Any]) -> bytes:
    if not values:
        body = struct.pack(">iii", 0, 0, _TEXT_OID)
    else:
        parts = [struct.pack(">iiiii", 1, 0, _TEXT_OID, len(values), 1)]
        for v in values:
            if v is None:
                raise EncodeError("a NULL name in a scene, album or match list")
            parts.append(_text(v))
        body = b"".join(parts)
    return struct.pack(">i", len(body)) + body


def encode_rows(items: Sequence[dict[str, Any]]) -> bytes:
    """The batch's staging rows in PGCOPY binary (``encode_row`` each, with the batch's
    embeddings and scene probabilities converted to half together); raises EncodeError as
    ``encode_row`` does."""
    embeddings = _batch_halfvecs(items, "embedding")
    probs = _batch_halfvecs(items, "scene_probs")
    return b"".join(encode_row(i, item, embeddings[i], probs[i]) for i, item in enumerate(items))


def encode_row(
    idx: int, item: dict[str, Any], embedding: bytes | None = None, probs: bytes | None = None
) -> bytes:
    """One staging row in PGCOPY binary; raises EncodeError for values it cannot encode.
    ``embedding`` and ``probs``: the item's halfvecs already encoded (``encode_rows``)."""
    try:
        scenes = item.get("scenes") or []
        albums = item.get("albums") or []
        matches = item.get("matches") or []
        fields = [
            _int(idx, "i"),
            _text(item.get("owner")),
            _text(item.get("bucket")),
            _text(item.get("key")),
            _text(item.get("version_id")),
            _text(item.get("etag")),
            _int(item.get("size"), "q"),
            _text(item.get("sequencer")),
            _time(item.get("event_time"), aware=True),
            _text(item.get("status")),
            _text(item.get("error")),
            _text(item.get("warning")),
            _time(item.get("taken_at"), aware=True),
            _time(item.get("taken_at_local"), aware=False),
            _float(item.get("gps_lat"), "d"),
            _float(item.get("gps_lon"), "d"),
            _int(item.get("width"), "i"),
            _int(item.get("height"), "i"),
            _text(item.get("camera")),
            _text(item.get("model_version")),
            _bool(item.get("model_trained")),
            _bool(item.get("scene_trained")),
            _bool(item.get("embedding_trained")),
            embedding or _halfvec(item.get("embedding")),
            probs or _halfvec(item.get("scene_probs")),
            _float(item.get("indoor"), "f"),
            _text_array([c for c, _ in scenes]),
            _real_array([p for _, p in scenes]),
            _text_array([a for a, _ in albums]),
            _real_array([s for _, s in albums]),
            _text_array([m[0] for m in matches]),
            _text_array([m[1] for m in matches]),
            _real_array([m[2] for m in matches]),
        ]
    except (TypeError, ValueError, OverflowError, struct.error, IndexError) as exc:
        raise EncodeError(f"cannot encode {item.get('bucket')}/{item.get('key')}: {exc}") from exc
    return struct.pack(">h", _FIELDS) + b"".join(fields)


def write_photos_copy(
    cur: Any, items: list[dict[str, Any]], *, fallback: bool = True
) -> list[tuple[int | None, str]]:
    """Write a batch set-based; per item (photo id or None, outcome) as ``write_photos``.

    Call inside a transaction (the staging rows vanish at its commit). ``fallback=False``
    (benches: measure this path or nothing) raises EncodeError or the database's error
    where the batch would go through the per-photo path.
    """
    if not items:
        return []
    try:
        rows = encode_rows(items)
    except EncodeError:
        if not fallback:
            raise
        return write_photos(cur, items)  # the per-photo path says which row and why
    # One round trip: the staging table (once per session), emptied (it is, unless an earlier
    # batch shares the transaction), and the savepoint the fallback rolls back to.
    cur.execute(f"{STAGE_DDL}; DELETE FROM sightline_stage; SAVEPOINT sightline_staged")
    try:
        data = _SIGNATURE + rows + _TRAILER
        cur.copy_expert(
            f"COPY sightline_stage ({_COLUMNS}) FROM STDIN (FORMAT binary)", io.BytesIO(data)
        )
        cur.execute("SELECT idx, photo_id, outcome FROM sightline_write_staged()")
        got = cur.fetchall()
    except psycopg2.Error as exc:
        # The connection itself failed, or the batch met a conflict with another transaction
        # (workers.db.CONFLICTS; sightline_write_photos re-raises those too): no row's fault,
        # so the caller retries the batch.
        if exc.pgcode is None or exc.pgcode in CONFLICTS or not fallback:
            raise
        cur.execute("ROLLBACK TO SAVEPOINT sightline_staged")
        return write_photos(cur, items)
    # No RELEASE: the savepoint ends with the caller's transaction, a round trip saved.
    by_idx = {i: (pid, outcome) for i, pid, outcome in got}
    return [by_idx[i] for i in range(len(items))]
