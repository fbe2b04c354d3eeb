"""`sightline purge`: an owner's rows, matches and corrections in batches with a count; old
tombstones only, never inside the event redelivery window that the sequencer guard needs."""

from __future__ import annotations

import json

import pytest

from tests.support import run_cli
from workers.store import write_photos


def _item(owner: str, key: str, status: str = "tagged", seq: str = "10") -> dict:
    item = {
        "owner": owner, "bucket": "b", "key": key, "version_id": None, "etag": "e", "size": 9,
        "sequencer": seq.ljust(64, "0"), "event_time": "2026-01-01T00:00:00Z",
        "status": status, "error": None,
    }  # fmt: skip
    if status == "tagged":
        item.update(
            scenes=[["beach", 0.6], ["coast", 0.3]],
            albums=[["beach", 0.9]],
            matches=[["r1", "l1", 0.8]],
            model_version="m",
        )
    return item


def _photos(db, *items, days_ago: int = 0) -> None:
    with db, db.cursor() as cur:
        out = write_photos(cur, list(items))
        assert all(not o.startswith("error") for _pid, o in out), out
        keys = [i["key"] for i in items]
        cur.execute(
            "UPDATE photos SET updated_at = now() - make_interval(days => %s), "
            "event_time = now() - make_interval(days => %s) WHERE key = ANY(%s)",
            (days_ago, days_ago, keys),
        )


@pytest.fixture
def release(db) -> None:
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status) "
            "VALUES ('r1', 4, 'm', '{}', 'active')"
        )
        cur.execute("INSERT INTO landmarks VALUES ('r1', 'l1', 'Tower', 'Paris', 'FR', 48, 2)")


def _count(db, sql: str, *params) -> int:
    with db, db.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


@pytest.mark.slow
def test_purge_owner_removes_rows_matches_and_corrections_in_batches(db, db_url, release) -> None:
    """Dry run counts and deletes nothing; the purge removes exactly alice's 5 rows (4 tagged, a
    tombstone), 8 scene rows, 4 albums, 4 matches, 3 corrections in 3 batches of 2; bob keeps
    his."""
    _photos(db, *[_item("alice", f"users/alice/{n}.jpg") for n in range(4)])
    _photos(db, _item("alice", "users/alice/gone.jpg", status="deleted"))
    _photos(db, *[_item("bob", f"users/bob/{n}.jpg") for n in range(2)])
    with db, db.cursor() as cur:  # owners' corrections, made as an album UI makes them
        cur.execute("SELECT owner, id FROM photos WHERE key IN ('users/alice/0.jpg', "
                    "'users/alice/1.jpg', 'users/alice/2.jpg', 'users/bob/0.jpg')")  # fmt: skip
        for owner, photo_id in cur.fetchall():
            cur.execute("SELECT hide_from_album(%s, %s, 'landmark', 'l1')", (owner, photo_id))
    env = {"DATABASE_URL": db_url}
    dry = run_cli("purge", "--owner", "alice", "--dry-run", "--batch", "2", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    expect = {"photos": 5, "scenes": 8, "albums": 4, "matches": 4, "corrections": 3,
              "batches": 3, "owner": "alice"}  # fmt: skip
    assert json.loads(dry.stdout) == {**expect, "dry_run": True}
    assert _count(db, "SELECT count(*) FROM photos WHERE owner = 'alice'") == 5

    done = run_cli("purge", "--owner", "alice", "--batch", "2", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {**expect, "dry_run": False}
    assert _count(db, "SELECT count(*) FROM photos WHERE owner = 'alice'") == 0
    assert _count(db, "SELECT count(*) FROM photos WHERE owner = 'bob'") == 2
    assert _count(db, "SELECT count(*) FROM photo_scenes") == 4
    assert _count(db, "SELECT count(*) FROM landmark_matches") == 2
    assert _count(db, "SELECT count(*) FROM photo_corrections") == 1
    assert _count(db, "SELECT count(*) FROM photo_corrections WHERE owner = 'bob'") == 1

    again = run_cli("purge", "--owner", "alice", "--json", env=env)
    assert json.loads(again.stdout)["photos"] == 0


@pytest.mark.slow
def test_purge_tombstones_only_past_the_redelivery_window(db, db_url, release) -> None:
    """--older-than 30d removes deleted and gone rows older than 30 days, never a tagged row
    or a younger tombstone; an age inside the 15-day window is refused in one line; a shorter
    window set by SIGHTLINE_MAX_EVENT_AGE allows a shorter age."""
    _photos(db, _item("a", "old-del.jpg", "deleted"), _item("a", "old-gone.jpg", "gone"),
            _item("a", "old-tagged.jpg"), days_ago=40)  # fmt: skip
    _photos(db, _item("a", "young-del.jpg", "deleted"), days_ago=5)
    env = {"DATABASE_URL": db_url}

    done = run_cli("purge", "--tombstones", "--older-than", "30d", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["photos"] == 2
    with db, db.cursor() as cur:
        cur.execute("SELECT key FROM photos ORDER BY key")
        assert [r[0] for r in cur.fetchall()] == ["old-tagged.jpg", "young-del.jpg"]

    refused = run_cli("purge", "--tombstones", "--older-than", "7d", env=env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "shorter than the event redelivery window (15 d" in refused.stderr
    assert _count(db, "SELECT count(*) FROM photos") == 2

    short = run_cli("purge", "--tombstones", "--older-than", "4d", "--json",
                    env={**env, "SIGHTLINE_MAX_EVENT_AGE": "3d"})  # fmt: skip
    assert short.returncode == 0, short.stderr
    assert json.loads(short.stdout)["photos"] == 1
    assert _count(db, "SELECT count(*) FROM photos WHERE status = 'deleted'") == 0


def test_a_kept_tombstone_refuses_a_late_older_put_and_a_purged_one_cannot(db, release) -> None:
    """Why the window exists: while the tombstone stands, a Put older than the delete is stale;
    once it is purged the same late Put would write the photo again."""
    _photos(db, _item("a", "k.jpg", "deleted", seq="20"))
    with db, db.cursor() as cur:
        [(_pid, outcome)] = write_photos(cur, [_item("a", "k.jpg", seq="10")])
    assert outcome == "stale"
    with db, db.cursor() as cur:
        cur.execute("DELETE FROM photos WHERE key = 'k.jpg'")
        [(_pid, outcome)] = write_photos(cur, [_item("a", "k.jpg", seq="10")])
    assert outcome == "tagged"


@pytest.mark.parametrize("age", ["thirty", "-3d", ""])
@pytest.mark.slow
def test_bad_ages_are_one_line_errors(db_url, age: str) -> None:
    out = run_cli("purge", "--tombstones", f"--older-than={age}", env={"DATABASE_URL": db_url})
    assert out.returncode == 2
    assert out.stderr.startswith("sightline: error:") and "Traceback" not in out.stderr
