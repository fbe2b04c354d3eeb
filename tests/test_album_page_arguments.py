"""album_photos refuses paging arguments it cannot honour (0030), in one line each, and
pages as before with good ones."""

from __future__ import annotations

import psycopg2
import pytest

from sightline import albums
from workers.store import write_photos


def _fill(cur, n: int) -> None:
    items = [
        {
            "owner": "alice",
            "bucket": "b",
            "key": f"p{i}.jpg",
            "status": "tagged",
            "taken_at": "2024-05-01T10:00:00+00:00",  # one sort_at: the id breaks ties
            "model_version": "m",
            "scenes": [["forest_path", 0.5]],
            "albums": [["forest", 0.5]],
            "matches": [],
        }
        for i in range(n)
    ]
    write_photos(cur, items)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("scene", "forest", None, None, -1), "p_limit must be 0 or more, not -1"),
        (("scene", "forest", None, None, None), "p_limit must be 0 or more, not NULL"),
        (("scene", "forest", "2024-05-01T10:00:00+00", None, 2), "go together"),
        (("scene", "forest", None, 7, 2), "go together"),
        (("people", "forest", None, None, 2), 'p_kind must be scene or landmark, not "people"'),
        (("scene\n", "forest", None, None, 2), r'not "scene\n"'),
        ((None, "forest", None, None, 2), "p_kind must be scene or landmark, not NULL"),
    ],
)
def test_bad_paging_arguments_are_refused_in_one_line(db, args, message) -> None:
    with db, db.cursor() as cur:
        _fill(cur, 3)
    with db.cursor() as cur, pytest.raises(psycopg2.Error) as err:
        cur.execute("SELECT * FROM album_photos('alice', %s, %s, %s, %s, %s)", args)
    db.rollback()
    assert err.value.pgcode == "22023"
    text = err.value.pgerror.splitlines()[0]
    assert text.startswith("ERROR:  album_photos: ") and message in text, text


def test_a_page_walk_with_tied_sort_keys_sees_each_photo_once(db) -> None:
    """Every photo at one sort_at: the id in the cursor decides, and limit 0 is an empty page."""
    with db, db.cursor() as cur:
        _fill(cur, 5)
        seen, after = [], None
        while page := albums.album_photos(cur, "alice", "scene", "forest", after=after, limit=2):
            seen += [p["key"] for p in page]
            after = (page[-1]["sort_at"], page[-1]["photo_id"])
        empty = albums.album_photos(cur, "alice", "scene", "forest", limit=0)
    assert sorted(seen) == [f"p{i}.jpg" for i in range(5)] and len(seen) == 5
    assert empty == []
