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
