"""0025: a photo's scene and album rows reference it, checked once a statement.

What 0019's foreign keys guaranteed still holds without them: a row whose photo is not
there is refused with a key's error, the photo is locked against a concurrent delete while
its rows are written, and deleting or truncating photos takes the rows with them."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import errors

from sightline.benches.writes import _items
from workers.db import connect
from workers.photo_copy import write_photos_copy


def _photos(db, n: int = 3) -> list[tuple[int, str]]:
    with db, db.cursor() as cur:
        got = write_photos_copy(cur, _items(n, "keys", 512, 365, seed=4))
        assert [o for _, o in got] == ["tagged"] * n
        cur.execute("SELECT id, owner FROM photos ORDER BY id")
        return cur.fetchall()


def _tag_counts(db) -> tuple[int, int]:
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM photo_scenes), (SELECT count(*) FROM photo_albums)"
        )
        return cur.fetchone()


def test_a_row_whose_photo_is_not_there_is_refused_as_a_key_refuses_it(db) -> None:
    (pid, owner), *_ = _photos(db)
    statements = [
        # one good row and one without its photo: the statement is refused whole
        ("INSERT INTO photo_scenes (photo_id, probability, rank, class_id, owner) "
         "SELECT x, 0.5, 9, (SELECT min(id) FROM scene_classes), %s "
         "FROM unnest(ARRAY[%s, 999999]::bigint[]) x", (owner, pid)),
        ("INSERT INTO photo_albums (photo_id, rank, album, score, owner, sort_at, trained) "
         "VALUES (%s, 9, 'forest', 0.5, %s, now(), false)", (pid, owner + "-other")),
        ("UPDATE photo_albums SET photo_id = 999999 WHERE photo_id = %s AND rank = 1", (pid,)),
        ("UPDATE photo_scenes SET owner = 'someone-else' WHERE photo_id = %s", (pid,)),
    ]  # fmt: skip
    before = _tag_counts(db)
    for sql, args in statements:
        with pytest.raises(errors.ForeignKeyViolation) as exc, db, db.cursor() as cur:
            cur.execute(sql, args)
        assert 'is not present in table "photos"' in exc.value.diag.message_detail, sql
    assert _tag_counts(db) == before


def test_deleting_a_photo_deletes_its_rows_and_truncate_empties_them(db) -> None:
    (first, owner), *_ = _photos(db)
    scenes, albums = _tag_counts(db)
    assert scenes == 15 and albums == 6
    with db, db.cursor() as cur:
        cur.execute("DELETE FROM photos WHERE id = %s AND owner = %s", (first, owner))
        cur.execute(
            "SELECT (SELECT count(*) FROM photo_scenes WHERE photo_id = %s), "
            "(SELECT count(*) FROM photo_albums WHERE photo_id = %s)",
            (first, first),
        )
        assert cur.fetchone() == (0, 0)
    assert _tag_counts(db) == (10, 4)
    with db, db.cursor() as cur:
        cur.execute("TRUNCATE photos CASCADE")
    assert _tag_counts(db) == (0, 0)


def test_rows_being_written_lock_their_photo_against_a_delete(db, db_url) -> None:
    """A delete of the photo waits for the transaction writing its rows (a key's FOR KEY
    SHARE), then takes the rows it wrote; none is left without its photo."""
    (pid, owner), *_ = _photos(db, 1)
    other = connect(db_url)
    try:
        with db.cursor() as cur:  # left open: the rows are written, not committed
            cur.execute(
                "INSERT INTO photo_albums (photo_id, rank, album, score, owner, sort_at, trained) "
                "VALUES (%s, 9, 'lake', 0.4, %s, now(), false)",
                (pid, owner),
            )
        with pytest.raises(errors.LockNotAvailable), other, other.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '300ms'")
            cur.execute("DELETE FROM photos WHERE id = %s AND owner = %s", (pid, owner))
        db.commit()
        with other, other.cursor() as cur:
            cur.execute("DELETE FROM photos WHERE id = %s AND owner = %s", (pid, owner))
            assert cur.rowcount == 1
    finally:
        other.close()
    assert _tag_counts(db) == (0, 0)


def test_a_row_of_a_photo_deleted_meanwhile_is_refused(db, db_url) -> None:
    """The other order: the delete holds the photo; the rows' statement waits, then finds
    it gone and is refused."""
    (pid, owner), *_ = _photos(db, 1)
    other = connect(db_url)
    try:
        with other.cursor() as cur:
            cur.execute("DELETE FROM photos WHERE id = %s AND owner = %s", (pid, owner))
        with db.cursor() as cur:
            cur.execute("SET lock_timeout = '300ms'")
        with pytest.raises(errors.LockNotAvailable), db, db.cursor() as cur:
            cur.execute(
                "INSERT INTO photo_albums (photo_id, rank, album, score, owner, sort_at, trained) "
                "VALUES (%s, 9, 'lake', 0.4, %s, now(), false)",
                (pid, owner),
            )
        other.commit()
        with pytest.raises(psycopg2.errors.ForeignKeyViolation), db, db.cursor() as cur:
            cur.execute(
                "INSERT INTO photo_albums (photo_id, rank, album, score, owner, sort_at, trained) "
                "VALUES (%s, 9, 'lake', 0.4, %s, now(), false)",
                (pid, owner),
            )
    finally:
        other.close()
    assert _tag_counts(db) == (0, 0)
