"""Several albums per photo by per-album thresholds, re-filed with no network; albums in the
order photos were taken, keyset-paged on that same key."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from models.scenes import SceneMap
from sightline import albums
from tests.support import run_cli
from workers.retag import retag_scenes


def _photo(cur, owner: str, key: str, probs: list[float] | None = None, **cols) -> int:
    names = ["owner", "bucket", "key", "status", "scene_probs", *cols]
    cur.execute(
        f"INSERT INTO photos ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
        "RETURNING id",
        [owner, "b", key, "tagged", probs, *cols.values()],
    )
    return cur.fetchone()[0]


def _map(tmp_path: Path, name: str, thresholds: dict[str, float]) -> Path:
    """The shipped map with thresholds on the first row of the albums given."""
    shipped = (resources.files("models") / "data" / "scene_map.csv").read_text()
    path = tmp_path / name
    seen: set[str] = set()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["places365_class", "album", "threshold"])
        for r in csv.DictReader(shipped.splitlines()):
            album = r["album"]
            cell = thresholds.get(album, "") if album not in seen else ""
            seen.add(album)
            w.writerow([r["places365_class"], album, cell])
    return path


def _filed(db) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with db, db.cursor() as cur:
        for a in albums.scene_albums(cur, "alice"):
            page = albums.album_photos(cur, "alice", "scene", a["album"], limit=100)
            out[a["album"]] = {p["key"] for p in page}
    return out


@pytest.mark.slow
def test_thresholds_move_photos_between_albums_with_no_network(db, db_url, tmp_path) -> None:
    """`sightline retag --scene-map` with thresholds files a photo in every album past its
    threshold; raising one threshold moves the photo out of that album; all from the stored
    probabilities (the command is given no weights, broker or object store)."""
    sm = SceneMap.load()
    n = len(sm.categories)

    def probs(**by_class: float) -> list[float]:
        v = np.full(n, 0.0, dtype=np.float32)
        for c, p in by_class.items():
            v[sm.categories.index(c)] = p
        return v.tolist()

    beach = sm.albums_by_class[sm.categories.index("beach")]
    with db, db.cursor() as cur:
        _photo(cur, "alice", "both.jpg", probs(bamboo_forest=0.55, beach=0.45))
        _photo(cur, "alice", "forest.jpg", probs(bamboo_forest=0.9, beach=0.1))
        _photo(cur, "alice", "beach.jpg", probs(bamboo_forest=0.3, beach=0.7))
    retag_scenes(db, sm, progress=False)
    assert _filed(db) == {"forest": {"both.jpg", "forest.jpg"}, beach: {"beach.jpg"}}

    env = {"DATABASE_URL": db_url, "SIGHTLINE_WEIGHTS": "", "CELERY_BROKER_URL": ""}
    loose = _map(tmp_path, "loose.csv", {"forest": 0.4, beach: 0.4})
    r = run_cli("retag", "--local", "--scene-map", str(loose), "--no-progress", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["scene_map"]
    assert (out["mode"], out["version"], out["photos"], out["done"]) == ("local", 1, 3, 3)
    assert (out["max_albums"], out["thresholds"], out["state"]) == (3, 2, "done")
    with db, db.cursor() as cur:  # the map in force, which workers file by, keeps them
        cur.execute("SELECT m.thresholds FROM scene_maps m JOIN scene_map_in_force f USING "
                    "(version)")  # fmt: skip
        assert cur.fetchone()[0] == {"forest": 0.4, beach: 0.4}
    assert _filed(db) == {"forest": {"both.jpg", "forest.jpg"}, beach: {"both.jpg", "beach.jpg"}}

    strict = _map(tmp_path, "strict.csv", {"forest": 0.6, beach: 0.4})
    r = run_cli("retag", "--local", "--scene-map", str(strict), "--no-progress", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert _filed(db) == {"forest": {"forest.jpg"}, beach: {"both.jpg", "beach.jpg"}}

    # K = 1: each photo keeps only its best album that passes.
    r = run_cli(
        "retag", "--local", "--scene-map", str(loose), "--max-albums", "1", "--json", env=env
    )
    assert r.returncode == 0, r.stderr
    assert _filed(db) == {"forest": {"both.jpg", "forest.jpg"}, beach: {"beach.jpg"}}
    bad = run_cli("retag", "--local", "--scene-map", str(loose), "--max-albums", "0", env=env)
    assert bad.returncode == 2 and "--max-albums" in bad.stderr


def test_albums_sort_by_when_taken_then_camera_clock_then_upload_then_processing(db) -> None:
    """The sort key: the instant taken; the camera's clock read as UTC; the upload event's
    time; processing time last. Pages of one photo walk that order with no gap or repeat."""
    with db, db.cursor() as cur:
        ids = {
            # 10:00 at +02:00 is 08:00 UTC.
            "instant": _photo(cur, "alice", "instant.jpg", taken_at="2024-01-01T10:00:00+02:00"),
            # 09:00 on the camera clock, no offset: read as 09:00 UTC, after 'instant'.
            "clock": _photo(cur, "alice", "clock.jpg", taken_at_local="2024-01-01T09:00:00"),
            # No EXIF time: uploaded in 2023, so not at the processing date (today).
            "upload": _photo(cur, "alice", "upload.jpg", event_time="2023-06-01T00:00:00Z"),
            "processed": _photo(cur, "alice", "processed.jpg"),
            # The instant wins over the upload time when both are known.
            "both": _photo(
                cur,
                "alice",
                "both.jpg",
                taken_at="2020-01-01T00:00:00Z",
                event_time="2025-01-01T00:00:00Z",
            ),
        }
        cur.execute(
            "INSERT INTO photo_albums (photo_id, rank, album, score, owner) "
            "SELECT id, 1, 'same', 0.5, owner FROM photos"
        )
        seen, after = [], None
        while page := albums.album_photos(cur, "alice", "scene", "same", after=after, limit=1):
            seen += page
            after = (page[-1]["sort_at"], page[-1]["photo_id"])
        cur.execute("SELECT sort_at FROM visible_photos WHERE id = %s", (ids["clock"],))
        clock_at = cur.fetchone()[0]
        cur.execute("SET enable_seqscan = off")
        cur.execute(
            "EXPLAIN SELECT id FROM visible_photos WHERE owner = 'alice' "
            "ORDER BY sort_at DESC, id DESC LIMIT 10"
        )
        plan = " ".join(r[0] for r in cur.fetchall())
    order = ["processed", "clock", "instant", "upload", "both"]
    assert [p["photo_id"] for p in seen] == [ids[k] for k in order]
    assert clock_at.isoformat() == "2024-01-01T09:00:00+00:00"
    assert "photos_owner_sort_at" in plan  # the keyset walk reads the index, not a sort


def test_upgrade_to_0011_keeps_the_albums_a_library_showed(empty_db_url) -> None:
    """A library tagged before 0011 (top 3 album scores stored, only rank 1 shown) shows the
    same albums after the upgrade, not three albums per photo."""
    from workers import migrate
    from workers.db import connect

    conn = connect(empty_db_url, register=False)
    with conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE schema_migrations (version text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in migrate.available():
            if m.version >= "0011":
                break
            cur.execute(m.sql)
            cur.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (m.version, m.checksum))
        pid = _photo(cur, "alice", "old.jpg", taken_at_local="2019-07-01T12:00:00")
        cur.execute(
            "INSERT INTO photo_albums VALUES (%s, 1, 'forest', 0.5), (%s, 2, 'park', 0.3), "
            "(%s, 3, 'city', 0.1)",
            (pid, pid, pid),
        )
        before = albums.scene_albums(cur, "alice")
    assert "0011_albums_people_trust" in migrate.upgrade(empty_db_url)
    with conn, conn.cursor() as cur:
        after = albums.scene_albums(cur, "alice")
        (page,) = albums.album_photos(cur, "alice", "scene", "forest")
    conn.close()
    assert [a["album"] for a in before] == [a["album"] for a in after] == ["forest"]
    assert page["sort_at"].isoformat() == "2019-07-01T12:00:00+00:00"  # was the processing time


@pytest.mark.parametrize("change", ["rewrite", "delete"])
def test_a_photo_written_during_a_refile_batch_keeps_its_own_albums(db, db_url, change) -> None:
    """A worker rewrites (or deletes) a photo after a re-file batch read it and before the
    batch replaces its album rows: the batch must not file the new version by the old
    probabilities, nor give the deleted photo album rows (the batch reruns on the conflict)."""
    import psycopg2

    from workers import retag
    from workers.store import write_photos

    sm = SceneMap.load()
    n = len(sm.categories)

    def probs(cls: str) -> list[float]:
        v = np.full(n, 0.0, dtype=np.float32)
        v[sm.categories.index(cls)] = 1.0
        return v.tolist()

    def item(cls: str, seq: str) -> dict:
        album = sm.albums_by_class[sm.categories.index(cls)]
        return {"owner": "alice", "bucket": "b", "key": "p.jpg", "sequencer": seq,
                "status": "tagged", "model_version": "m", "scene_probs": probs(cls),
                "albums": [[album, 1.0]], "matches": []}  # fmt: skip

    with db, db.cursor() as cur:
        ((pid, _),) = write_photos(cur, [item("bamboo_forest", "10")])
    beach = sm.albums_by_class[sm.categories.index("beach")]
    later = (
        item("beach", "20")
        if change == "rewrite"
        else {
            "owner": "alice",
            "bucket": "b",
            "key": "p.jpg",
            "sequencer": "20",
            "status": "deleted",
        }
    )
    real, fired = retag.as_array, []

    def read_then_race(value):  # after the batch's read: another writer commits
        if not fired:
            fired.append(True)
            other = psycopg2.connect(db_url)
            with other, other.cursor() as cur:
                write_photos(cur, [later])
            other.close()
        return real(value)

    retag.as_array = read_then_race
    try:
        retag_scenes(db, sm, progress=False)
    finally:
        retag.as_array = real
    with db, db.cursor() as cur:
        cur.execute("SELECT album FROM photo_albums WHERE photo_id = %s ORDER BY rank", (pid,))
        rows = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT album, photos FROM scene_albums('alice')")
        summary = cur.fetchall()
    assert fired
    if change == "rewrite":
        assert rows == [beach] and summary == [(beach, 1)]
    else:
        assert rows == [] and summary == []
