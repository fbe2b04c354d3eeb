"""Album summaries (count, untrained count, cover) and status counters stay equal to a recount
from the photos after random writes, deletes and re-files, and the album functions that read
them give what the full-scan definitions of 0001 gave."""

from __future__ import annotations

import numpy as np
import pytest

from models.scenes import SceneMap
from sightline.status import photo_counts
from workers.retag import retag_scenes
from workers.store import write_photos

OWNERS = ("alice", "bob", "carol")
SCENES = ("forest", "beach", "mountain", "hotel", "museum")
LANDMARKS = ("L0", "L1", "L2", "L3")

# The truth, recomputed from photos with the 0001 definitions (visible_photos, full scans).
TRUE_SCENES = """
    SELECT v.owner, 'scene', '', a.album, count(*),
           count(*) FILTER (WHERE NOT coalesce(v.model_trained, false)),
           (array_agg(v.id ORDER BY v.sort_at DESC, v.id DESC))[1]
    FROM visible_photos v JOIN photo_albums a ON a.photo_id = v.id AND a.rank = 1
    GROUP BY v.owner, a.album"""
TRUE_LANDMARKS = """
    SELECT v.owner, 'landmark', m.release, m.landmark_id, count(*), 0,
           (array_agg(v.id ORDER BY v.sort_at DESC, v.id DESC))[1]
    FROM visible_photos v JOIN landmark_matches m ON m.photo_id = v.id
    GROUP BY v.owner, m.release, m.landmark_id"""
SUMMARIES = """
    SELECT owner, kind, release, album, photos, untrained, cover_photo_id
    FROM album_summaries WHERE photos > 0"""


def _check(cur) -> None:
    cur.execute(f"{TRUE_SCENES} UNION ALL {TRUE_LANDMARKS} ORDER BY 1, 2, 3, 4")
    truth = cur.fetchall()
    cur.execute(f"{SUMMARIES} ORDER BY 1, 2, 3, 4")
    assert cur.fetchall() == truth
    cur.execute("SELECT status, count(*) FROM photos GROUP BY status")
    counts = dict(cur.fetchall())
    got = photo_counts(cur)
    assert {s: n for s, n in got.items() if n and s != "total"} == counts
    assert got["total"] == sum(counts.values())


def _pages(cur, owner: str, kind: str, album: str, limit: int = 3) -> list[int]:
    out: list[int] = []
    after = (None, None)
    while True:
        cur.execute(
            "SELECT photo_id, sort_at FROM album_photos(%s, %s, %s, %s, %s, %s)",
            (owner, kind, album, *after, limit),
        )
        rows = cur.fetchall()
        out += [r[0] for r in rows]
        if len(rows) < limit:
            return out
        after = (rows[-1][1], rows[-1][0])


def _item(rng, n_classes: int, key: int, status: str = "tagged") -> dict:
    owner = OWNERS[rng.integers(len(OWNERS))]
    item = {
        "owner": owner,
        "bucket": "b",
        "key": f"k{key}.jpg",
        "status": status,
        "error": None if status == "tagged" else "a reason",
        # Some photos have no time taken: they sort by created_at.
        "taken_at": None
        if rng.random() < 0.2
        else f"2024-0{1 + rng.integers(9)}-1{rng.integers(10)}T10:00:00+00:00",
    }
    if status == "tagged":
        albums = rng.choice(SCENES, size=1 + rng.integers(3), replace=False)
        item.update(
            model_version="m",
            model_trained=bool(rng.random() < 0.7),
            scene_probs=rng.dirichlet(np.full(n_classes, 0.1)).tolist(),
            albums=[[str(a), float(1 / (r + 2))] for r, a in enumerate(albums)],
            matches=[
                [rel, str(lm), 0.9]
                for rel in ("r1", "r2")
                for lm in rng.choice(LANDMARKS, size=rng.integers(3), replace=False)
            ],
        )
    return item


@pytest.mark.parametrize("seed", [0, 1])
def test_summaries_equal_a_recount_after_random_writes_deletes_and_refiles(db, seed) -> None:
    """Random upserts (owner moves, new times, other albums and matches, failed and deleted
    photos), row deletes, direct edits of photos and memberships, landmark and scene re-files:
    after each step every summary equals the recount, and album pages list exactly the
    recount's members in keyset order."""
    rng = np.random.default_rng(seed)
    sm = SceneMap.load()
    n_classes = len(sm.categories)
    with db, db.cursor() as cur:
        for rel, status in (("r1", "active"), ("r2", "retagging")):
            cur.execute(
                "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status)"
                " VALUES (%s, 8, 'm', '{}', %s)",
                (rel, status),
            )
            for lm in LANDMARKS:
                cur.execute(
                    "INSERT INTO landmarks (release, landmark_id, name) VALUES (%s, %s, %s)",
                    (rel, lm, lm),
                )
    for _ in range(60):
        op = rng.choice(["write", "write", "write", "status", "delete", "edit", "refile"])
        with db, db.cursor() as cur:
            if op == "write":
                batch = [_item(rng, n_classes, int(rng.integers(40))) for _ in range(5)]
                assert all(o != "stale" for _, o in write_photos(cur, batch))
            elif op == "status":  # failed / deleted: tags dropped
                st = str(rng.choice(["failed", "deleted", "gone"]))
                write_photos(cur, [_item(rng, n_classes, int(rng.integers(40)), st)])
            elif op == "delete":  # rows removed (purge): memberships cascade
                cur.execute(
                    "DELETE FROM photos WHERE id IN (SELECT id FROM photos ORDER BY random() "
                    "LIMIT 2)"
                )
            elif op == "edit":  # writers other than the write function
                cur.execute(
                    "UPDATE photos SET taken_at = taken_at - interval '400 days', "
                    "owner = CASE WHEN random() < 0.5 THEN 'dave' ELSE owner END "
                    "WHERE id IN (SELECT id FROM photos ORDER BY random() LIMIT 3)"
                )
                cur.execute(
                    "UPDATE photo_albums SET album = 'lake' WHERE photo_id IN "
                    "(SELECT photo_id FROM photo_albums ORDER BY random() LIMIT 2)"
                )
                cur.execute(
                    "UPDATE photos SET status = 'pending' WHERE id = "
                    "(SELECT min(id) FROM photos WHERE status = 'tagged')"
                )
            else:  # landmark re-file as a re-tag batch does it, then a scene re-map
                cur.execute("DELETE FROM landmark_matches WHERE release = 'r2'")
                cur.execute(
                    "INSERT INTO landmark_matches (release, photo_id, landmark_id, score) "
                    "SELECT 'r2', id, 'L' || (id % 4), 0.8 FROM photos "
                    "WHERE status = 'tagged' AND id % 3 = 0"
                )
        if op == "refile":
            retag_scenes(db, sm, batch_size=7, progress=False)
        with db, db.cursor() as cur:
            _check(cur)
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*) FROM album_summaries WHERE photos > 0")
        assert cur.fetchone()[0] > 10
        cur.execute(f"{TRUE_SCENES} UNION ALL {TRUE_LANDMARKS}")
        truth = cur.fetchall()
        for owner, kind, release, album, *_ in truth:
            if release == "r2":
                continue  # album_photos reads the active release only
            cur.execute(
                "SELECT v.id FROM visible_photos v "
                + (
                    "JOIN photo_albums a ON a.photo_id = v.id AND a.rank = 1 AND a.album = %s"
                    if kind == "scene"
                    else "JOIN landmark_matches a ON a.photo_id = v.id "
                    "AND a.release = 'r1' AND a.landmark_id = %s"
                )
                + " WHERE v.owner = %s ORDER BY v.sort_at DESC, v.id DESC",
                (album, owner),
            )
            want = [r[0] for r in cur.fetchall()]
            assert want and _pages(cur, owner, kind, album) == want


def test_recount_is_the_one_function_that_repairs_a_summary(db) -> None:
    """sightline_album_recount() (what a correction calls) rebuilds one album's summary from
    its members; sightline_album_adjust() with a removed cover finds the next newest."""
    items = [
        {
            "owner": "a",
            "bucket": "b",
            "key": f"{i}",
            "status": "tagged",
            "model_trained": True,
            "taken_at": f"2024-01-0{i + 1}T00:00:00+00:00",
            "albums": [["forest", 0.9]],
        }
        for i in range(3)
    ]
    with db, db.cursor() as cur:
        ids = [pid for pid, _ in write_photos(cur, items)]
        cur.execute("UPDATE album_summaries SET photos = 99, cover_photo_id = NULL")
        cur.execute("SELECT sightline_album_recount('a', 'scene', '', 'forest')")
        cur.execute("SELECT photos, cover_photo_id FROM album_summaries")
        assert cur.fetchall() == [(3, ids[2])]
        # A correction hiding the cover: it leaves the members, then adjusts by -1.
        cur.execute("DELETE FROM photo_albums WHERE photo_id = %s", (ids[2],))
        cur.execute("SELECT photos, cover_photo_id FROM album_summaries")
        assert cur.fetchall() == [(2, ids[1])]
        cur.execute("SELECT * FROM scene_albums('a')")
        assert cur.fetchall() == [("forest", 2, ids[1], False)]


def test_concurrent_batches_of_one_owner_never_deadlock_on_summaries(db_url) -> None:
    """Two workers writing one owner's photos at once, their batches filing albums in opposite
    orders: every photo is written (summary rows are locked in one global order, at the end
    of each batch), and the summaries equal the recount."""
    import threading

    from workers.db import connect

    albums = [f"a{i}" for i in range(12)]

    def batch(worker: int, round_: int) -> list[dict]:
        order = albums if worker == 0 else albums[::-1]
        return [
            {
                "owner": "alice",
                "bucket": "b",
                "key": f"w{worker}/r{round_}/{i}",
                "status": "tagged",
                "taken_at": f"2024-01-{1 + i:02d}T00:00:00+00:00",
                "albums": [[a, 0.9]],
                "matches": [["r1", f"L{i % 3 if worker == 0 else 2 - i % 3}", 0.9]],
            }
            for i, a in enumerate(order)
        ]

    setup = connect(db_url)
    with setup, setup.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status) "
            "VALUES ('r1', 8, 'm', '{}', 'active')"
        )
        cur.execute(
            "INSERT INTO landmarks (release, landmark_id, name) "
            "SELECT 'r1', 'L' || g, 'L' || g FROM generate_series(0, 2) g"
        )
    refused: list = []
    start = threading.Barrier(2)

    def work(worker: int) -> None:
        conn = connect(db_url)
        start.wait()
        for r in range(15):
            with conn, conn.cursor() as cur:
                got = write_photos(cur, batch(worker, r))
            refused.extend(o for _, o in got if o != "tagged")
        conn.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert refused == []
    with setup, setup.cursor() as cur:
        cur.execute("SELECT count(*) FROM photos WHERE status = 'tagged'")
        assert cur.fetchone()[0] == 2 * 15 * len(albums)
        _check(cur)
    setup.close()
