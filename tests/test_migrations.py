"""Schema migrations: recorded, idempotent, safe when two processes upgrade at once."""

from __future__ import annotations

import multiprocessing

import pytest

from workers import migrate
from workers.db import DatabaseError, connect


def _schema(url: str) -> list[tuple]:
    conn = connect(url, register=False)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2"
        )
        cols = cur.fetchall()
        cur.execute(
            "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE nspname = 'public' AND proname NOT LIKE 'vector%%' ORDER BY 1"
        )
        funcs = cur.fetchall()
        cur.execute("SELECT version, checksum, applied_at FROM schema_migrations ORDER BY 1")
        recorded = cur.fetchall()
    conn.close()
    return [*cols, *funcs, *recorded]


def test_upgrade_applies_every_migration_once(empty_db_url: str) -> None:
    """The first upgrade applies all migrations; the second applies none and changes nothing."""
    names = [m.version for m in migrate.available()]
    assert migrate.upgrade(empty_db_url) == names
    before = _schema(empty_db_url)
    assert migrate.upgrade(empty_db_url) == []
    assert _schema(empty_db_url) == before
    assert migrate.applied(empty_db_url) == names


def test_upgrade_until_stops_at_that_migration(empty_db_url: str) -> None:
    """until= leaves the database as that migration left it (what bench writes --paired-with
    measures against); the next upgrade applies the rest; an unknown number is refused."""
    names = [m.version for m in migrate.available()]
    upto = next(n for n in names if n.startswith("0024"))
    with pytest.raises(DatabaseError, match="no migration '0999'"):
        migrate.upgrade(empty_db_url, until="0999")
    assert migrate.upgrade(empty_db_url, until="0024") == names[: names.index(upto) + 1]
    conn = connect(empty_db_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('photo_scenes')::text, to_regclass('photo_scene_sets')")
        assert cur.fetchone() == ("photo_scenes", None)  # 0025 not applied
    conn.close()
    assert migrate.upgrade(empty_db_url) == names[names.index(upto) + 1 :]


def _upgrade_in_process(url: str, out) -> None:
    try:
        out.put(("ok", migrate.upgrade(url)))
    except Exception as exc:  # reported to the parent
        out.put(("error", repr(exc)))


def test_concurrent_upgrades_apply_each_migration_exactly_once(empty_db_url: str) -> None:
    """Two processes upgrading at once: one applies, the other waits on the lock and skips."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_upgrade_in_process, args=(empty_db_url, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert all(kind == "ok" for kind, _ in results), results
    applied_lists = sorted((r for _, r in results), key=len)
    assert applied_lists[0] == []
    assert applied_lists[1] == [m.version for m in migrate.available()]


def test_edited_applied_migration_is_refused(db_url: str) -> None:
    """An applied migration whose file changed is refused, not silently skipped."""
    conn = connect(db_url, register=False)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = '0001_init'")
    conn.close()
    with pytest.raises(DatabaseError, match="changed after it was applied"):
        migrate.upgrade(db_url)


def test_connect_without_pgvector_fails_with_a_clear_message(empty_db_url: str) -> None:
    """A database without the vector extension is refused at connect, in one line."""
    with pytest.raises(DatabaseError, match="pgvector extension is not installed"):
        connect(empty_db_url)


def test_unreachable_database_is_one_line_error() -> None:
    with pytest.raises(DatabaseError, match="cannot connect to Postgres"):
        connect("postgresql://nobody@127.0.0.1:1/none", timeout_s=2)
