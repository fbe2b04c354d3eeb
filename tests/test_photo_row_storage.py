"""Where a photo row's values are stored (0029): the halfvecs stay in the row when real
keys, ETags and sequencers pass PostgreSQL's TOAST threshold; text moves out instead."""

from __future__ import annotations

import numpy as np

from workers.photo_copy import write_photos_copy
from workers.store import write_photos


def _item(i: int, key: str) -> dict:
    rng = np.random.default_rng(i)
    emb = rng.standard_normal(512).astype(np.float32)
    return {
        "owner": "alice",
        "bucket": "photos",
        "key": key,
        "etag": rng.bytes(16).hex(),
        "size": 3_500_000,
        "sequencer": f"{i:016X}".ljust(64, "0"),
        "event_time": "2024-05-01T10:15:00+00:00",
        "status": "tagged",
        "taken_at": "2024-05-01T10:15:00+00:00",
        "gps_lat": 48.85,
        "gps_lon": 2.29,
        "width": 4000,
        "height": 3000,
        "camera": "Apple iPhone 14 Pro",
        "model_version": "scene+1a2b3c4d5e6f",
        "model_trained": False,
        "embedding": (emb / np.linalg.norm(emb)).tolist(),
        "scene_probs": rng.dirichlet(np.full(365, 0.1)).tolist(),
        "indoor": 0.2,
        "scenes": [["forest_path", 0.5]],
        "albums": [["forest", 0.5]],
        "matches": [],
    }


def test_scene_probabilities_stay_in_the_row_when_text_passes_the_threshold(db) -> None:
    """Rows of 2,032+ bytes (long keys, both write paths): the probabilities and embedding
    are not moved to TOAST (pg_column_toast_chunk_id is NULL), every row reads back whole,
    and rows fit four to a heap page."""
    prefix = "library/0f8fad5b-d9cb-469f-a165-70867728950e/2024/2024-05-01/"
    items = [_item(i, f"{prefix}IMG_{i:05d}.HEIC") for i in range(64)]
    with db, db.cursor() as cur:
        write_photos_copy(cur, items[:32], fallback=False)
    with db, db.cursor() as cur:
        write_photos(cur, items[32:])
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE pg_column_toast_chunk_id(scene_probs)"
            " IS NULL AND pg_column_toast_chunk_id(embedding) IS NULL),"
            " count(*) FILTER (WHERE pg_column_toast_chunk_id(key) IS NOT NULL"
            "  OR pg_column_toast_chunk_id(etag) IS NOT NULL"
            "  OR pg_column_compression(sequencer) IS NOT NULL),"
            " count(DISTINCT (ctid::text::point)[0]) FROM photos"
        )
        rows, inline, text_moved, pages = cur.fetchone()
        assert rows == 64 and inline == 64
        assert text_moved == 64  # the rows did pass the threshold: the toaster ran on each
        assert pages <= 64 // 4 + 1  # a partition's last page may be part full
        cur.execute("SELECT key, scene_probs::real[] FROM photos ORDER BY key")
        got = cur.fetchall()
    assert [k for k, _ in got] == sorted(i["key"] for i in items)
    want = {i["key"]: np.asarray(i["scene_probs"], np.float16) for i in items}
    for key, probs in got:
        assert np.array_equal(np.asarray(probs, np.float16), want[key])


def test_the_column_is_main_on_every_partition(db) -> None:
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT c.relname, a.attstorage FROM pg_partition_tree('photos') t"
            " JOIN pg_class c ON c.oid = t.relid"
            " JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = 'scene_probs'"
        )
        storage = dict(cur.fetchall())
    assert len(storage) > 1 and set(storage.values()) == {"m"}, storage
