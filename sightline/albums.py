"""The album SQL an album UI runs (the README shows the same statements)."""

from __future__ import annotations

from typing import Any

SCENE_ALBUMS = "SELECT album, photos, cover_photo_id, untrained FROM scene_albums(%(owner)s)"
LANDMARK_ALBUMS = (
    "SELECT country, city, landmark_id, name, photos, cover_photo_id, release "
    "FROM landmark_albums(%(owner)s)"
)
ALBUM_PHOTOS = (
    "SELECT photo_id, key, sort_at, score FROM album_photos("
    "%(owner)s, %(kind)s, %(album)s, %(after_sort)s, %(after_id)s, %(limit)s)"
)


def rows(cur: Any, sql: str, **params: Any) -> list[dict[str, Any]]:
    cur.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def scene_albums(cur: Any, owner: str) -> list[dict[str, Any]]:
    return rows(cur, SCENE_ALBUMS, owner=owner)


def landmark_albums(cur: Any, owner: str) -> list[dict[str, Any]]:
    return rows(cur, LANDMARK_ALBUMS, owner=owner)


def album_photos(
    cur: Any,
    owner: str,
    kind: str,
    album: str,
    *,
    after: tuple[Any, int] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """One page of an album; pass the last row's (sort_at, photo_id) as ``after``."""
    return rows(
        cur,
        ALBUM_PHOTOS,
        owner=owner,
        kind=kind,
        album=album,
        after_sort=after[0] if after else None,
        after_id=after[1] if after else None,
        limit=limit,
    )
