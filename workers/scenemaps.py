"""The one scene map in force, stored in Postgres with a version (migration 0016).

`sightline retag --scene-map` installs a map, then re-files the stored photos by it; the first
worker to start installs its own when none is stored. Workers keep the map in force for
``RELEASE_TTL_S`` like the live releases, and re-check its version, under a share lock, in
the transaction that writes their photos: a write either commits before an install (so the
re-file that follows sees it) or is filed by the new map, and the two never disagree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from models.scenes import SceneMap
from workers.migrate import hold_schema
from workers.releases import RELEASE_TTL_S

log = logging.getLogger("sightline.worker")

_LOCK = "sightline.scene_map_install"


@dataclass(frozen=True)
class StoredMap:
    version: int
    albums: dict[str, str | None]  # class -> album label (None: in no album)
    excluded: frozenset[str]
    thresholds: dict[str, float]  # album -> summed probability to join it (issue 15)

    def for_categories(self, categories: tuple[str, ...], unlearnt: frozenset[str]) -> SceneMap:
        """The map over a checkpoint's classes; the classes it never learnt are sift too."""
        mapping = {c: self.albums.get(c) for c in categories if c in self.albums}
        albums = {a for a in mapping.values() if a}
        thresholds = {a: t for a, t in self.thresholds.items() if a in albums}
        return SceneMap.from_albums(
            mapping, categories, excluded=self.excluded | unlearnt, thresholds=thresholds
        )


def _digest(
    albums: dict[str, str | None], excluded: frozenset[str], thresholds: dict[str, float]
) -> str:
    body = {"albums": albums, "excluded": sorted(excluded)}
    if thresholds:  # a map without thresholds keeps the digest it had before they existed
        body["thresholds"] = thresholds
    body = json.dumps(body, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _albums(scene_map: SceneMap) -> dict[str, str | None]:
    return dict(zip(scene_map.categories, scene_map.albums_by_class))


def install(conn: Any, scene_map: SceneMap, source: str, *, only_if_none: bool = False) -> int:
    """Put ``scene_map`` in force; returns its version (an identical stored map keeps its
    version). With ``only_if_none`` a map already in force is left alone and its version
    returned. Serialised by an advisory lock; commits."""
    albums, excluded = _albums(scene_map), frozenset(scene_map.excluded)
    thresholds = {a: float(t) for a, t in scene_map.thresholds.items()}
    digest = _digest(albums, excluded, thresholds)
    with conn, conn.cursor() as cur:
        hold_schema(cur)  # first: an upgrade in progress finishes before the re-file
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
        cur.execute("SELECT version FROM scene_map_in_force")
        row = cur.fetchone()
        if row is not None and only_if_none:
            return int(row[0])
        cur.execute("SELECT version FROM scene_maps WHERE content_sha256 = %s", (digest,))
        found = cur.fetchone()
        if found is not None:
            version = int(found[0])
        else:
            cur.execute("SELECT coalesce(max(version), 0) + 1 FROM scene_maps")
            version = int(cur.fetchone()[0])
            cur.execute(
                "INSERT INTO scene_maps (version, albums, excluded, thresholds, content_sha256, "
                "source) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    version,
                    json.dumps(albums),
                    json.dumps(sorted(excluded)),
                    json.dumps(thresholds),
                    digest,
                    source,
                ),
            )
        if row is None or int(row[0]) != version:
            cur.execute(
                "INSERT INTO scene_map_in_force (one, version) VALUES (true, %s) "
                "ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version, since = now()",
                (version,),
            )
    return version


def in_force(cur: Any, *, lock: bool = False) -> int | None:
    """The version in force (None: none stored). ``lock`` takes a share lock on it until the
    transaction ends, so an install waits for this transaction (and vice versa)."""
    cur.execute("SELECT version FROM scene_map_in_force" + (" FOR SHARE" if lock else ""))
    row = cur.fetchone()
    return None if row is None else int(row[0])


def load(cur: Any, version: int) -> StoredMap:
    cur.execute(
        "SELECT albums, excluded, thresholds FROM scene_maps WHERE version = %s", (version,)
    )
    albums, excluded, thresholds = cur.fetchone()
    return StoredMap(version, albums, frozenset(excluded), thresholds)


class LiveSceneMap:
    """The map in force as a worker sees it: re-read at most every ``ttl_s`` seconds, and
    whenever a write transaction finds another version in force (``refresh``)."""

    def __init__(self, categories: tuple[str, ...], unlearnt: frozenset[str],
                 ttl_s: float = RELEASE_TTL_S) -> None:  # fmt: skip
        self.categories = categories
        self.unlearnt = unlearnt
        self.ttl_s = ttl_s
        self.version: int | None = None
        self.scene_map: SceneMap | None = None
        self._read_at: float | None = None

    def get(self, conn: Any) -> tuple[int | None, SceneMap | None]:
        """(version, map) in force; (None, None) when none is stored."""
        if self._read_at is None or time.monotonic() - self._read_at > self.ttl_s:
            with conn, conn.cursor() as cur:
                self.refresh(cur, in_force(cur))
        return self.version, self.scene_map

    def refresh(self, cur: Any, version: int | None) -> bool:
        """Load ``version`` through ``cur`` if it is not the one held; True when it changed."""
        self._read_at = time.monotonic()
        if version == self.version:
            return False
        previous = self.version
        if version is None:
            self.version, self.scene_map = None, None
        else:
            self.scene_map = load(cur, version).for_categories(self.categories, self.unlearnt)
            self.version = version
        log.info("scene map %s in force (was %s)", version, previous)
        return True
