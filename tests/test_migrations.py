"""Schema migrations: recorded, idempotent, safe when two processes upgrade at once."""

from __future__ import annotations

import multiprocessing
import uuid

import psycopg2
import pytest

from tests.support import wait_for
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
    for unknown in ("0999", "0024_nonsense", "24"):
        with pytest.raises(DatabaseError, match=f"no migration '{unknown}'"):
            migrate.upgrade(empty_db_url, until=unknown)
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


def test_0025_refuses_a_deployment_view_and_keeps_its_grants(empty_db_url: str) -> None:
    """0025 turns the table photo_scenes into a view: a deployment's own view on it stops the
    upgrade with its name (nothing applied), and privileges granted on photo_scenes and
    photo_scene_names hold on the new views."""
    role = f"r_{uuid.uuid4().hex[:8]}"
    migrate.upgrade(empty_db_url, until="0024")
    conn = connect(empty_db_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE VIEW my_top_scenes AS SELECT * FROM photo_scenes WHERE rank = 1")
            cur.execute(f'CREATE ROLE "{role}"')
            cur.execute(f'GRANT SELECT ON photo_scenes TO "{role}"')
            cur.execute("GRANT SELECT ON photo_scene_names TO PUBLIC")
        with pytest.raises(psycopg2.Error, match="my_top_scenes read it: drop them, upgrade"):
            migrate.upgrade(empty_db_url)
        assert migrate.applied(empty_db_url)[-1].startswith("0024")
        # What a view cannot carry (row security, column privileges) stops it too.
        for setup, undo in [
            (f'GRANT SELECT (photo_id) ON photo_scenes TO "{role}"',
             f'REVOKE SELECT (photo_id) ON photo_scenes FROM "{role}"'),
            ("ALTER TABLE photo_scenes ENABLE ROW LEVEL SECURITY",
             "ALTER TABLE photo_scenes DISABLE ROW LEVEL SECURITY"),
        ]:  # fmt: skip
            with conn.cursor() as cur:
                cur.execute("DROP VIEW IF EXISTS my_top_scenes")
                cur.execute(setup)
            with pytest.raises(psycopg2.Error, match="row security policies or column priv"):
                migrate.upgrade(empty_db_url)
            with conn.cursor() as cur:
                cur.execute(undo)
        assert migrate.applied(empty_db_url)[-1].startswith("0024")
        assert migrate.upgrade(empty_db_url)[0].startswith("0025")
        with conn.cursor() as cur:
            cur.execute(
                "SELECT relname, relkind, has_table_privilege(%s, oid, 'SELECT'), "
                "has_table_privilege('public', oid, 'SELECT') FROM pg_class "
                "WHERE relname IN ('photo_scenes', 'photo_scene_names') ORDER BY 1",
                (role,),
            )
            assert cur.fetchall() == [
                ("photo_scene_names", "v", True, True),  # through PUBLIC
                ("photo_scenes", "v", True, False),
            ]
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')
        conn.close()


@pytest.mark.parametrize(
    ("classes", "probs", "check"),
    [
        ("{}", "{}", "photo_scene_sets_lists"),  # no scenes: no row
        ("{{1,2},{3,4}}", "{{0.1,0.2},{0.3,0.4}}", "photo_scene_sets_lists"),
        ("[0:1]={1,2}", "[0:1]={0.5,0.25}", "photo_scene_sets_lists"),  # rank is the position
        ("{1,2}", "{0.5}", "photo_scene_sets_one_probability_a_class"),
        ("{1,NULL}", "{0.5,0.25}", "photo_scene_sets_no_null_class_id"),
        ("{1,2}", "{0.5,NULL}", "photo_scene_sets_no_null_probability"),
    ],
)
def test_0025_scene_sets_hold_only_lists_the_view_can_rank(db, classes, probs, check) -> None:
    """A scene set is two non-empty lists from position 1, of one length, without NULLs;
    anything else is refused by the check named for it."""
    with db, db.cursor() as cur:
        cur.execute("SAVEPOINT s")
        with pytest.raises(psycopg2.errors.CheckViolation, match=check):
            cur.execute(
                "INSERT INTO photo_scene_sets VALUES (1, 'alice', %s::smallint[], %s::real[])",
                (classes, probs),
            )
        cur.execute("ROLLBACK TO SAVEPOINT s")


def test_an_upgrade_and_a_write_wait_for_each_other(db_url: str) -> None:
    """hold_schema: an upgrade waits for a write transaction that holds the schema lock, and
    a write that starts during an upgrade waits for it to commit."""
    import threading

    def waiting(cur) -> int:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cur.fetchone()[0]

    writer, watcher = connect(db_url), connect(db_url)
    watcher.autocommit = True
    done: list = []
    try:
        with writer, writer.cursor() as cur:
            migrate.hold_schema(cur)
            up = threading.Thread(target=lambda: done.append(migrate.upgrade(db_url)))
            up.start()
            with watcher.cursor() as w:
                wait_for(lambda: waiting(w) == 1, timeout=10, what="the upgrade to wait")
            assert up.is_alive() and not done
        up.join(timeout=30)
        assert done == [[]]  # it ran once the write committed (nothing left to apply)

        upgrading = connect(db_url)
        with upgrading, upgrading.cursor() as cur:  # what upgrade() holds while it runs
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (migrate._LOCK_ID,))
            write = threading.Thread(target=lambda: _hold_and_commit(db_url, done))
            write.start()
            with watcher.cursor() as w:
                wait_for(lambda: waiting(w) == 1, timeout=10, what="the write to wait")
            assert write.is_alive() and len(done) == 1
        write.join(timeout=30)
        upgrading.close()
        assert done[1:] == ["written"]
    finally:
        writer.close()
        watcher.close()


def _hold_and_commit(url: str, out: list) -> None:
    conn = connect(url)
    with conn, conn.cursor() as cur:
        migrate.hold_schema(cur)
    conn.close()
    out.append("written")
