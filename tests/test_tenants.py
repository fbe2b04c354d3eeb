"""Tenant isolation of the album SQL: no query the README offers shows one owner another
owner's photos, scenes or landmarks, and the album role can run those queries and no other."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg2
import psycopg2.errors
import pytest

from sightline import albums
from workers.store import write_photos

OWNERS = ("alice", "bob")
# Strings an attacker might pass as the owner: none is a pattern, a list or SQL.
HOSTILE = ["%", "_lice", "alice%", "' OR '1'='1", "alice' --", "", "ALICE", "alice ", "*"]


def _item(owner: str, n: int) -> dict:
    """One tagged photo in the scene album 'forest' and the landmark album 'eiffel'."""
    return {
        "owner": owner,
        "bucket": "photos",
        "key": f"users/{owner}/{n}.jpg",
        "version_id": None,
        "etag": None,
        "size": 10,
        "sequencer": None,
        "event_time": None,
        "status": "tagged",
        "error": None,
        # The owners' photos interleave in time, so pages and cursors mix if anything leaks.
        "taken_at": f"2024-05-{1 + n:02d}T10:00:00+00:00",
        "scenes": [["forest_path", 0.7]],
        "albums": [["forest", 0.9]],
        "model_version": "m",  # the model of release r1: read through its active release
        "matches": [["r1", "eiffel", 0.8]],
    }


@pytest.fixture
def photos(db) -> dict[str, set[int]]:
    """Alice and Bob each own photos in the same scene and landmark albums; ids per owner."""
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status) "
            "VALUES ('r1', 8, 'm', '{}', 'active')"
        )
        cur.execute(
            "INSERT INTO landmarks VALUES ('r1', 'eiffel', 'Eiffel Tower', 'Paris', 'France', "
            "48.858, 2.294)"
        )
        items = [_item(OWNERS[n % 2], n) for n in range(7)]  # alice 4, bob 3
        written = write_photos(cur, items)
    ids: dict[str, set[int]] = {o: set() for o in OWNERS}
    for item, (pid, outcome) in zip(items, written, strict=True):
        assert outcome == "tagged"
        ids[item["owner"]].add(pid)
    return ids


@pytest.fixture
def cursors(db, photos) -> list[tuple]:
    """Every (sort_at, id) keyset position in the albums, whoever owns it, and the start."""
    with db, db.cursor() as cur:
        cur.execute("SELECT sort_at, id FROM visible_photos ORDER BY id")
        return [(None, None), *cur.fetchall()]


def _seen(cur, owner: str, cursors: list[tuple]) -> set[int]:
    """Photo ids one owner gets through every README query, with every keyset argument."""
    seen: set[int] = set()
    for row in albums.scene_albums(cur, owner):
        seen.add(row["cover_photo_id"])
    for row in albums.landmark_albums(cur, owner):
        seen.add(row["cover_photo_id"])
    for kind, album in [("scene", "forest"), ("landmark", "eiffel")]:
        for after in cursors:
            for limit in (1, 50):
                page = albums.album_photos(
                    cur, owner, kind, album, after=None if after[0] is None else after, limit=limit
                )
                seen |= {p["photo_id"] for p in page}
    return seen


def test_each_owner_sees_exactly_their_own_photos(db, photos, cursors) -> None:
    """Scene albums, landmark albums and every page of both (with cursors taken from anyone's
    rows) show each owner their own photos: all of them, and no one else's."""
    with db, db.cursor() as cur:
        for owner in OWNERS:
            assert _seen(cur, owner, cursors) == photos[owner]
            (scene,) = albums.scene_albums(cur, owner)
            (landmark,) = albums.landmark_albums(cur, owner)
            assert scene["photos"] == landmark["photos"] == len(photos[owner])


@pytest.mark.parametrize("owner", HOSTILE)
def test_hostile_owner_strings_match_no_one(db, photos, cursors, owner: str) -> None:
    """Wildcards, quotes, case or spaces in the owner argument read nobody's photos."""
    with db, db.cursor() as cur:
        assert _seen(cur, owner, cursors) == set()
        assert albums.scene_albums(cur, owner) == []
        assert albums.landmark_albums(cur, owner) == []


@pytest.fixture
def reader_url(db_url: str, pg_server) -> Iterator[str]:
    """A login role that is a member of sightline_album_reader, connected to the test DB."""
    role = f"ui_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg_server.get_uri())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE sightline_album_reader')
    head, _, query = db_url.partition("?")
    scheme, _, rest = head.partition("://")
    yield f"{scheme}://{role}@{rest.split('@', 1)[1]}?{query}"
    with admin.cursor() as cur:
        cur.execute(f'DROP ROLE IF EXISTS "{role}"')
    admin.close()


def test_album_role_runs_the_album_functions_and_reads_no_table(
    db, photos, cursors, reader_url
) -> None:
    """As sightline_album_reader: the three album functions answer as for the owner; every
    table and view, and the write function, are refused."""
    conn = psycopg2.connect(reader_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone()[0].startswith("ui_")
            assert _seen(cur, "alice", cursors) == photos["alice"]
            assert _seen(cur, "bob", cursors) == photos["bob"]
            for relation in [
                "photos",
                "visible_photos",
                "photo_albums",
                "photo_scenes",
                "landmark_matches",
                "landmarks",
                "releases",
                "centroids",
            ]:
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(f"SELECT * FROM {relation} LIMIT 1")
            # The write function catches per-photo errors: it reports the refusal per row.
            batch = json.dumps([_item("x", 99)])
            cur.execute("SELECT outcome FROM sightline_write_photos(%s)", (batch,))
            assert cur.fetchone()[0] == "error: permission denied for table photos"
    finally:
        conn.close()


def test_album_functions_are_not_public(db, photos, pg_server, db_url) -> None:
    """A role outside sightline_album_reader cannot call the definer-rights album functions."""
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_server.get_uri())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
    head, _, query = db_url.partition("?")
    scheme, _, rest = head.partition("://")
    try:
        conn = psycopg2.connect(f"{scheme}://{role}@{rest.split('@', 1)[1]}?{query}")
        conn.autocommit = True
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            albums.scene_albums(cur, "alice")
        conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()
