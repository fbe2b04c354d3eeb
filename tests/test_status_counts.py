"""The photo counts by status (`sightline status` reads them, not the photos) stay equal to a
count over the photos whatever the size and kind of statement: many photos in one INSERT,
upserts that change a status, upserts that change nothing, deletes of many rows."""

from __future__ import annotations

STATUSES = ("tagged", "failed", "ignored", "deleted")


def _counters(cur) -> dict[str, int]:
    cur.execute("SELECT status, sum(photos)::int FROM photo_status_counts GROUP BY 1")
    return {s: n for s, n in cur.fetchall() if n}


def _recount(cur) -> dict[str, int]:
    cur.execute("SELECT status, count(*)::int FROM photos GROUP BY 1")
    return dict(cur.fetchall())


def _insert(cur, lo: int, hi: int, owners: int = 5) -> None:
    """Photos lo..hi in ONE statement, statuses cycling, spread over owners (partitions)."""
    cur.execute(
        "INSERT INTO photos (owner, bucket, key, status) SELECT 'o' || (i %% %s), 'b', "
        "'k/' || i, (%s::text[])[1 + i %% 4] FROM generate_series(%s, %s) i",
        (owners, list(STATUSES), lo, hi),
    )


def test_counts_follow_large_statements_inserts_upserts_and_deletes(db) -> None:
    with db, db.cursor() as cur:
        _insert(cur, 1, 6000)  # one statement, one transaction
        _insert(cur, 6001, 6003)
        expected = {"tagged": 1500, "failed": 1501, "ignored": 1501, "deleted": 1501}
        assert _counters(cur) == _recount(cur) == expected
    with db, db.cursor() as cur:
        # Upserts: 'failed' photos 1..1000 become 'tagged'; the rest conflict and stay.
        cur.execute(
            "INSERT INTO photos AS p (owner, bucket, key, status) SELECT 'o' || (i % 5), 'b', "
            "'k/' || i, 'tagged' FROM generate_series(1, 1000) i "
            "ON CONFLICT (bucket, key, owner) DO UPDATE SET status = EXCLUDED.status"
        )
        cur.execute(
            "INSERT INTO photos (owner, bucket, key, status) SELECT 'o' || (i % 5), 'b', "
            "'k/' || i, 'failed' FROM generate_series(1, 50) i "
            "ON CONFLICT (bucket, key, owner) DO NOTHING"
        )
        assert _counters(cur) == _recount(cur)
        assert _recount(cur)["failed"] == 1501 - 250
    with db, db.cursor() as cur:
        cur.execute(
            "DELETE FROM photos WHERE key IN (SELECT 'k/' || i FROM generate_series(1, 4000) i)"
        )
        cur.execute("UPDATE photos SET status = 'deleted' WHERE status = 'ignored'")
        assert _counters(cur) == _recount(cur)
        assert sum(_recount(cur).values()) == 2003
    with db, db.cursor() as cur:
        cur.execute("TRUNCATE photos CASCADE")
        assert _counters(cur) == {} == _recount(cur)


def test_inserts_and_deletes_count_per_statement(db) -> None:
    """One counter update per statement, not per photo: a 6,000-photo insert leaves the
    counter rows with one version each (a row trigger would have updated them 6,000 times)."""
    with db, db.cursor() as cur:
        _insert(cur, 1, 4)  # the counter rows exist before the big statement
    with db, db.cursor() as cur:
        cur.execute("SELECT n_tup_upd + n_tup_hot_upd FROM pg_stat_xact_user_tables "
                    "WHERE relname = 'photo_status_counts'")  # fmt: skip
        before = cur.fetchone()[0]
        _insert(cur, 5, 6004)
        cur.execute("DELETE FROM photos WHERE status = 'failed'")
        cur.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables "
                    "WHERE relname = 'photo_status_counts'")  # fmt: skip
        assert cur.fetchone()[0] - before <= len(STATUSES) + 1
        assert _counters(cur) == _recount(cur)


def _heads(cur) -> list[tuple]:
    from sightline.status import tagged_heads

    return [
        (h["model_version"], h["scene_trained"], h["embedding_trained"], h["photos"])
        for h in tagged_heads(cur)
    ]


def _heads_recount(cur) -> list[tuple]:
    cur.execute(
        "SELECT model_version, scene_trained, embedding_trained, count(*)::int FROM photos "
        "WHERE status = 'tagged' GROUP BY 1, 2, 3"
    )
    return _sorted(cur.fetchall())


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: tuple((v is None, v) for v in r))


def test_tagged_heads_are_counters_that_follow_every_kind_of_write(db) -> None:
    """`sightline status`'s tagged photos per model version and head provenance (NULL
    provenance included) come from counters (0023) that equal the full count after large
    inserts, a re-tag by another model, a re-tag by the same one, status changes, deletes of
    many rows and TRUNCATE."""
    insert = (
        "INSERT INTO photos AS p (owner, bucket, key, status, model_version, scene_trained, "
        "embedding_trained) SELECT 'o' || (i %% 5), 'b', 'k/' || i, "
        "(ARRAY['tagged', 'tagged', 'failed'])[1 + i %% 3], %s, "
        "(ARRAY[true, false, NULL])[1 + (i / 3) %% 3], (ARRAY[NULL, true])[1 + i %% 2] "
        "FROM generate_series(%s, %s) i "
        "ON CONFLICT (bucket, key, owner) DO UPDATE SET status = EXCLUDED.status, "
        "model_version = EXCLUDED.model_version, scene_trained = EXCLUDED.scene_trained, "
        "embedding_trained = EXCLUDED.embedding_trained"
    )
    with db, db.cursor() as cur:
        cur.execute(insert, ("m1", 1, 6000))  # one statement
        cur.execute(insert, ("m1", 6001, 6010))
        want = _heads_recount(cur)
        assert _sorted(_heads(cur)) == want and sum(r[3] for r in want) == 4007
        assert len({(r[1], r[2]) for r in want}) == 6  # NULL, true, false provenance met
    with db, db.cursor() as cur:
        cur.execute(insert, ("m2", 1, 2500))  # a new model re-tags a quarter of them
        cur.execute(insert, ("m2", 2001, 2500))  # the same model again: nothing changes
        assert _sorted(_heads(cur)) == _heads_recount(cur)
        assert {r[0] for r in _heads(cur)} == {"m1", "m2"}
        heads = _heads(cur)
        assert [r[3] for r in heads] == sorted((r[3] for r in heads), reverse=True)
    with db, db.cursor() as cur:
        cur.execute("UPDATE photos SET status = 'failed' WHERE id % 7 = 0")
        cur.execute("UPDATE photos SET status = 'tagged' WHERE status = 'failed' AND id % 11 = 0")
        cur.execute("UPDATE photos SET scene_trained = true WHERE id % 13 = 0")
        cur.execute("DELETE FROM photos WHERE key IN "
                    "(SELECT 'k/' || i FROM generate_series(3000, 5000) i)")  # fmt: skip
        assert _sorted(_heads(cur)) == _heads_recount(cur)
    with db, db.cursor() as cur:
        cur.execute("TRUNCATE photos CASCADE")
        assert _heads(cur) == [] == _heads_recount(cur)


def test_two_sessions_never_wait_on_each_others_head_counters(db_url) -> None:
    """Each session keeps its own counter rows (a slot held with a session advisory lock):
    two open transactions re-tagging photos of two old model versions in opposite orders, or
    changing statuses crosswise, never wait on each other (with slots shared by backends, the
    third UPDATE below waited on the second's row and the fourth deadlocked), and the head
    and status counters add up after both."""
    from workers.db import connect

    a, b = connect(db_url), connect(db_url)
    with a, a.cursor() as cur:
        cur.execute(
            "INSERT INTO photos (owner, bucket, key, status, model_version) VALUES "
            "('o', 'b', 'p1', 'tagged', 'v1'), ('o', 'b', 'p2', 'tagged', 'v2'), "
            "('o', 'b', 'p3', 'tagged', 'v2'), ('o', 'b', 'p4', 'tagged', 'v1')"
        )
    with a, a.cursor() as cur:  # a client that releases its session locks keeps no slot
        cur.execute("SELECT sightline_counter_slot(), pg_advisory_unlock_all()")
        released = cur.fetchone()[0]
    slots = []
    for conn in (b, a):
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '3s'")
            cur.execute("SELECT sightline_counter_slot()")
            slots.append(cur.fetchone()[0])
    assert slots[0] == released and slots[1] != slots[0]  # b took it; a took another
    update = "UPDATE photos SET model_version = 'v3' WHERE key = %s"
    for conn, key in ((a, "p1"), (b, "p2"), (a, "p3"), (b, "p4")):  # both transactions open
        with conn.cursor() as cur:
            cur.execute(update, (key,))
    a.commit()
    b.commit()
    with a, a.cursor() as cur:
        assert _heads(cur) == [("v3", None, None, 4)] and _heads_recount(cur) == _heads(cur)
    # The status counters likewise: statuses changed crosswise, both transactions open.
    status = "UPDATE photos SET status = %s WHERE key = %s"
    for conn, st, key in ((a, "failed", "p1"), (b, "deleted", "p2"), (a, "ignored", "p3"),
                          (b, "failed", "p4")):  # fmt: skip
        with conn.cursor() as cur:
            cur.execute(status, (st, key))
    a.commit()
    b.commit()
    with a, a.cursor() as cur:
        assert _counters(cur) == _recount(cur) == {"failed": 2, "deleted": 1, "ignored": 1}
        assert _heads(cur) == []
    a.close()
    b.close()
