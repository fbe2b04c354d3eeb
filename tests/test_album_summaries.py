"""Album summaries (count, untrained count, cover) and status counters stay equal to a recount
from the photos after random writes, deletes and re-files, and the album functions that read
them give what the full-scan definitions of 0001 gave."""

from __future__ import annotations

import numpy as np
import pytest

from models.scenes import SceneMap
from sightline.status import photo_counts, tagged_heads
from workers.retag import retag_scenes
from workers.store import write_photos

OWNERS = ("alice", "bob", "carol")
SCENES = ("forest", "beach", "mountain", "hotel", "museum")
LANDMARKS = ("L0", "L1", "L2", "L3")

# The truth, recomputed from photos with 0011's membership rule (album_membership: every
# album a photo is filed in, corrections applied) by full scans. Landmark albums are per
# release; the owner's landmark adds hold in every release and are summarised as release ''.
TRUE_SCENES = """
    SELECT owner, 'scene', '', label, count(*),
           count(*) FILTER (WHERE NOT coalesce(model_trained, false)),
           (array_agg(photo_id ORDER BY sort_at DESC, photo_id DESC))[1]
    FROM album_membership WHERE kind = 'scene'
    GROUP BY owner, label"""
TRUE_LANDMARKS = """
    SELECT owner, 'landmark', release, label, count(*), 0,
           (array_agg(photo_id ORDER BY sort_at DESC, photo_id DESC))[1]
    FROM (SELECT v.owner, m.release, m.landmark_id AS label, v.id AS photo_id, v.sort_at
          FROM visible_photos v JOIN landmark_matches m ON m.photo_id = v.id
          WHERE NOT EXISTS (SELECT FROM photo_corrections c
                            WHERE c.owner = v.owner AND c.photo_id = v.id
                              AND c.kind = 'landmark' AND c.label = m.landmark_id)
          UNION ALL
          SELECT v.owner, '', c.label, v.id, v.sort_at
          FROM photo_corrections c JOIN visible_photos v ON v.id = c.photo_id AND v.owner = c.owner
          WHERE c.kind = 'landmark' AND c.verdict = 'add') x
    GROUP BY owner, release, label"""
# 0011's album functions, by full scans of album_membership.
FULL_SCENE_ALBUMS = """
    SELECT m.label, count(*),
           (array_agg(m.photo_id ORDER BY m.sort_at DESC, m.photo_id DESC))[1],
           bool_or(NOT coalesce(m.model_trained, false))
    FROM album_membership m WHERE m.owner = %s AND m.kind = 'scene'
    GROUP BY m.label ORDER BY count(*) DESC, m.label"""
FULL_LANDMARK_ALBUMS = """
    SELECT coalesce(l.country, ''), coalesce(l.city, ''), m.label, coalesce(l.name, m.label),
           count(*), (array_agg(m.photo_id ORDER BY m.sort_at DESC, m.photo_id DESC))[1],
           m.release
    FROM album_membership m
    LEFT JOIN landmarks l ON l.release = m.release AND l.landmark_id = m.label
    WHERE m.owner = %s AND m.kind = 'landmark'
    GROUP BY l.country, l.city, m.label, l.name, m.release
    ORDER BY 1, 2, count(*) DESC, 4"""
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
    cur.execute(
        "SELECT model_version, count(*) FROM photos WHERE status = 'tagged' GROUP BY 1"
    )  # the write path keeps the head counters (0023) too
    tagged = dict(cur.fetchall())
    assert {h["model_version"]: h["photos"] for h in tagged_heads(cur)} == tagged
    for owner in (*OWNERS, "dave"):
        cur.execute(FULL_SCENE_ALBUMS, (owner,))
        want = cur.fetchall()
        cur.execute("SELECT * FROM scene_albums(%s)", (owner,))
        assert cur.fetchall() == want
        cur.execute(FULL_LANDMARK_ALBUMS, (owner,))
        want = cur.fetchall()
        cur.execute("SELECT * FROM landmark_albums(%s)", (owner,))
        assert cur.fetchall() == want


def _correct(cur, rng) -> str | None:
    """One owner's correction as an album UI makes it: hide a label the photo is in (or any),
    add one, or undo one, through the writer functions."""
    cur.execute("SELECT id, owner FROM photos WHERE status = 'tagged' ORDER BY random() LIMIT 1")
    row = cur.fetchone()
    if row is None:
        return None
    pid, owner = row
    kind = str(rng.choice(["scene", "landmark"]))
    label = str(rng.choice(SCENES if kind == "scene" else LANDMARKS))
    verb = str(rng.choice(["hide_from_album", "add_to_album", "undo_correction"]))
    if verb == "undo_correction":
        cur.execute("SELECT undo_correction(%s, %s, %s, %s)", (owner, pid, kind, label))
    else:
        cur.execute(f"SELECT * FROM {verb}(%s, %s, %s, %s)", (owner, pid, kind, label))
    return verb


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
    verbs: set[str | None] = set()
    for _ in range(60):
        op = rng.choice(
            ["write", "write", "write", "status", "delete", "edit", "refile", "correct"]
        )
        with db, db.cursor() as cur:
            if op == "write":
                batch = [_item(rng, n_classes, int(rng.integers(40))) for _ in range(5)]
                assert all(o != "stale" for _, o in write_photos(cur, batch))
            elif op == "status":  # failed / deleted: tags dropped
                st = str(rng.choice(["failed", "deleted", "gone"]))
                write_photos(cur, [_item(rng, n_classes, int(rng.integers(40)), st)])
            elif op == "correct":
                for _ in range(3):
                    verbs.add(_correct(cur, rng))
            elif op == "delete":  # rows removed (purge): memberships cascade
                cur.execute(
                    "DELETE FROM photos WHERE id IN (SELECT id FROM photos ORDER BY random() "
                    "LIMIT 2)"
                )
            elif op == "edit":  # writers other than the write function
                # (An owner never changes in place since 0017: owner moves come by the
                # writes above, a key written again under another owner.)
                cur.execute(
                    "UPDATE photos SET taken_at = taken_at - interval '400 days' "
                    "WHERE id IN (SELECT id FROM photos ORDER BY random() LIMIT 3)"
                )
                # One album row of each of two photos not in 'lake' (a photo is in an album
                # once: several albums per photo, 0011).
                cur.execute(
                    "UPDATE photo_albums SET album = 'lake' WHERE (photo_id, rank) IN "
                    "(SELECT * FROM (SELECT DISTINCT ON (photo_id) photo_id, rank "
                    "FROM photo_albums b WHERE NOT EXISTS (SELECT FROM photo_albums c "
                    "WHERE c.photo_id = b.photo_id AND c.album = 'lake')) x "
                    "ORDER BY random() LIMIT 2)"
                )
                cur.execute(
                    "UPDATE photos SET status = 'pending' WHERE id = "
                    "(SELECT min(id) FROM photos WHERE status = 'tagged')"
                )
            else:  # landmark re-file as a re-tag batch does it, then a scene re-map
                cur.execute("DELETE FROM landmark_matches WHERE release = 'r2'")
                cur.execute(
                    "INSERT INTO landmark_matches (release, photo_id, landmark_id, score, owner) "
                    "SELECT 'r2', id, 'L' || (id % 4), 0.8, owner FROM photos "
                    "WHERE status = 'tagged' AND id % 3 = 0"
                )
        if op == "refile":
            retag_scenes(db, sm, batch_size=7, progress=False)
        with db, db.cursor() as cur:
            _check(cur)
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*) FROM album_summaries WHERE photos > 0")
        assert cur.fetchone()[0] > 10
        cur.execute("SELECT DISTINCT owner, kind, label FROM album_membership ORDER BY 1, 2, 3")
        for owner, kind, album in cur.fetchall():
            cur.execute(
                "SELECT photo_id FROM album_membership WHERE owner = %s AND kind = %s "
                "AND label = %s ORDER BY sort_at DESC, photo_id DESC",
                (owner, kind, album),
            )
            want = [r[0] for r in cur.fetchall()]
            assert want and _pages(cur, owner, kind, album) == want
    assert {"hide_from_album", "add_to_album", "undo_correction"} <= verbs  # the walk corrected


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


def test_summaries_follow_corrections_hide_add_undo(db) -> None:
    """Corrections change summaries in the correcting transaction: a hidden photo leaves its
    album's count and cover, an added one joins (scene and landmark, in whichever release is
    active), an undo restores the tagger's answer; a photo's delete or failure takes its adds
    and hides along. After each step the summaries equal the recount from album_membership."""
    with db, db.cursor() as cur:
        for rel, status in (("r1", "active"), ("r2", "imported")):
            cur.execute(
                "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status)"
                " VALUES (%s, 8, 'm', '{}', %s)",
                (rel, status),
            )
            cur.execute(
                "INSERT INTO landmarks (release, landmark_id, name) VALUES (%s, 'L0', 'Zero'), "
                "(%s, 'L1', 'One')",
                (rel, rel),
            )
        items = [
            {
                "owner": "alice",
                "bucket": "b",
                "key": f"{i}.jpg",
                "status": "tagged",
                "model_trained": True,
                "taken_at": f"2024-01-0{i + 1}T00:00:00+00:00",
                "albums": [["forest", 0.6], ["park", 0.3]],  # several albums (0011)
                "matches": [["r1", "L0", 0.9], ["r2", "L0", 0.9]],
            }
            for i in range(4)
        ]
        ids = [pid for pid, _ in write_photos(cur, items)]
        _check(cur)
    newest = ids[-1]

    def summary(cur, kind: str, album: str) -> tuple:
        """(photos, cover) of one of alice's albums as the album functions give it."""
        if kind == "scene":
            cur.execute("SELECT album, photos, cover_photo_id FROM scene_albums('alice')")
        else:
            cur.execute("SELECT landmark_id, photos, cover_photo_id FROM landmark_albums('alice')")
        return next(((n, c) for a, n, c in cur.fetchall() if a == album), (0, None))

    with db, db.cursor() as cur:
        # Hide the newest photo (every album's cover) from the rank-2 album and a landmark.
        cur.execute("SELECT * FROM hide_from_album('alice', %s, 'scene', 'park')", (newest,))
        cur.execute("SELECT * FROM hide_from_album('alice', %s, 'landmark', 'L0')", (newest,))
        assert summary(cur, "scene", "park") == (3, ids[2])
        assert summary(cur, "scene", "forest") == (4, newest)
        assert summary(cur, "landmark", "L0") == (3, ids[2])
        _check(cur)
        # Add a photo to a scene album it is not filed in, and to another landmark.
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'scene', 'beach')", (ids[0],))
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'landmark', 'L1')", (ids[1],))
        assert summary(cur, "scene", "beach") == (1, ids[0])
        assert summary(cur, "landmark", "L1") == (1, ids[1])
        _check(cur)
        # A changed verdict: the hidden photo added back (it counts once, not twice).
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'scene', 'park')", (newest,))
        assert summary(cur, "scene", "park") == (4, newest)
        _check(cur)
        # Undo: the tagger's answer again.
        cur.execute("SELECT undo_correction('alice', %s, 'scene', 'park')", (newest,))
        cur.execute("SELECT undo_correction('alice', %s, 'landmark', 'L0')", (newest,))
        cur.execute("SELECT undo_correction('alice', %s, 'scene', 'beach')", (ids[0],))
        assert summary(cur, "scene", "park") == (4, newest)
        assert summary(cur, "landmark", "L0") == (4, newest)
        assert summary(cur, "scene", "beach") == (0, None)
        _check(cur)
    with db, db.cursor() as cur:
        # The add and a hide hold in another release once it is active.
        cur.execute("SELECT * FROM hide_from_album('alice', %s, 'landmark', 'L0')", (ids[0],))
        cur.execute(
            "UPDATE releases SET status = CASE version WHEN 'r2' THEN 'active' ELSE 'retired' END"
        )
        assert summary(cur, "landmark", "L1") == (1, ids[1])
        assert summary(cur, "landmark", "L0") == (3, newest)
        _check(cur)
        # A hidden photo deleted, an added photo failed: each leaves what it was in, once.
        cur.execute("SELECT * FROM hide_from_album('alice', %s, 'scene', 'forest')", (newest,))
        cur.execute("DELETE FROM photos WHERE id = %s", (newest,))
        assert summary(cur, "scene", "forest") == (3, ids[2])
        _check(cur)
        cur.execute("UPDATE photos SET status = 'failed' WHERE id = %s", (ids[1],))
        assert summary(cur, "landmark", "L1") == (0, None)
        _check(cur)
        cur.execute("SELECT count(*) FROM album_summaries WHERE photos < 0")
        assert cur.fetchone()[0] == 0


def test_truncating_photos_empties_every_album(db) -> None:
    """`TRUNCATE photos CASCADE` (a library reset) takes every tag row with it, through the
    tag tables' partitions: the album summaries, status and head counters empty with them."""
    items = [
        {"owner": "a", "bucket": "b", "key": f"{i}", "status": "tagged", "model_version": "m",
         "albums": [["forest", 0.9]], "matches": []}
        for i in range(3)
    ]  # fmt: skip
    with db, db.cursor() as cur:
        write_photos(cur, items)
        cur.execute("SELECT album, photos FROM scene_albums('a')")
        assert cur.fetchall() == [("forest", 3)]
        cur.execute("TRUNCATE photos CASCADE")
        cur.execute("SELECT * FROM scene_albums('a')")
        assert cur.fetchall() == []
        cur.execute("SELECT count(*) FROM album_summaries WHERE photos <> 0")
        assert cur.fetchone()[0] == 0
        assert photo_counts(cur)["total"] == 0 and tagged_heads(cur) == []


def test_a_delete_event_takes_the_photos_corrections_along(db) -> None:
    """A delete event leaves a tombstone (status 'deleted'), and an upload at the same key
    later reuses the row: a hide or an add made for the deleted photo must not apply to the
    new one (0026; they did). The summaries equal the recount at each step."""
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status)"
            " VALUES ('r1', 8, 'm', '{}', 'active')"
        )
        cur.execute(
            "INSERT INTO landmarks (release, landmark_id, name) VALUES ('r1', 'L0', 'Zero'),"
            " ('r1', 'L1', 'One')"
        )

        def photo(key: str, seq: str, status: str = "tagged") -> dict:
            item = {"owner": "alice", "bucket": "b", "key": key, "sequencer": seq, "status": status}
            if status == "tagged":
                item.update(model_version="m", model_trained=True,
                            albums=[["forest", 0.9]], matches=[["r1", "L0", 0.9]])  # fmt: skip
            return item

        (pid, _), _ = write_photos(cur, [photo("a.jpg", "10"), photo("b.jpg", "10")])
        cur.execute("SELECT * FROM hide_from_album('alice', %s, 'scene', 'forest')", (pid,))
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'landmark', 'L1')", (pid,))
        _check(cur)
        assert write_photos(cur, [photo("a.jpg", "20", "deleted")])[0][1] == "deleted"
        cur.execute("SELECT count(*) FROM photo_corrections WHERE photo_id = %s", (pid,))
        assert cur.fetchone() == (0,)
        _check(cur)
        assert write_photos(cur, [photo("a.jpg", "30")]) == [(pid, "tagged")]  # same row
        cur.execute("SELECT album, photos FROM scene_albums('alice')")
        assert cur.fetchall() == [("forest", 2)]
        cur.execute("SELECT landmark_id, photos FROM landmark_albums('alice') ORDER BY 1")
        assert cur.fetchall() == [("L0", 2)]
        _check(cur)


def test_a_correction_waits_for_a_writer_it_would_have_overwritten(db, db_url) -> None:
    """A correction recounts its album; a writer holding a delta for that album (a failed
    photo with an add re-tagged: the owner's adds row +1) commits while the correction
    waits for the row. The recount counted before it waited and wrote over the writer's +1
    (a trial: the adds row one short); since 0027 it counts once it holds the row."""
    import threading

    from tests.support import wait_for
    from workers.db import connect

    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status)"
            " VALUES ('r1', 8, 'm', '{}', 'active')"
        )
        cur.execute(
            "INSERT INTO landmarks (release, landmark_id, name) VALUES ('r1', 'L0', 'Zero')"
        )
        items = [
            {"owner": "carol", "bucket": "b", "key": f"{i}.jpg", "status": "tagged",
             "model_version": "m", "albums": [["forest", 0.9]], "matches": []}
            for i in range(2)
        ]  # fmt: skip
        (a, _), (b, _) = write_photos(cur, items)
        for pid in (a, b):
            cur.execute("SELECT * FROM add_to_album('carol', %s, 'landmark', 'L0')", (pid,))
        cur.execute("UPDATE photos SET status = 'failed' WHERE id = %s", (a,))
        _check(cur)
    writer = connect(db_url)
    corrector = connect(db_url)
    errors: list[BaseException] = []

    def correct() -> None:
        try:
            with corrector, corrector.cursor() as cur:
                cur.execute("SELECT * FROM hide_from_album('carol', %s, 'landmark', 'L0')", (b,))
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        with writer, writer.cursor() as cur:
            cur.execute("UPDATE photos SET status = 'tagged' WHERE id = %s", (a,))  # adds +1
            thread = threading.Thread(target=correct)
            thread.start()

            def corrector_waits() -> bool:
                with db, db.cursor() as c:
                    c.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                              (corrector.get_backend_pid(),))  # fmt: skip
                    return c.fetchone() == ("Lock",)

            wait_for(corrector_waits, timeout=30, interval=0.05, what="the correction waiting")
        thread.join(30)
    finally:
        writer.close()
        corrector.close()
    assert not errors, errors
    with db, db.cursor() as cur:
        cur.execute("SELECT landmark_id, photos FROM landmark_albums('carol')")
        assert cur.fetchall() == [("L0", 1)]  # a, re-tagged; b hidden
        _check(cur)


def test_a_deleted_photo_takes_no_correction(db) -> None:
    """A tombstone's row comes back for an upload at its key: a hide or an add made while it
    was deleted would apply to that new photo, so it is refused (0028), as a label with white
    space around it is (it made a second album)."""
    import psycopg2.errors

    with db, db.cursor() as cur:
        item = {"owner": "alice", "bucket": "b", "key": "a.jpg", "sequencer": "10",
                "status": "tagged", "model_version": "m", "albums": [["forest", 0.9]],
                "matches": []}  # fmt: skip
        ((pid, _),) = write_photos(cur, [item])
        tombstone = {"owner": "alice", "bucket": "b", "key": "a.jpg", "sequencer": "20",
                     "status": "deleted"}  # fmt: skip
        write_photos(cur, [tombstone])
        _check(cur)
    with pytest.raises(psycopg2.Error, match="is deleted"), db, db.cursor() as cur:
        cur.execute("SELECT * FROM hide_from_album('alice', %s, 'scene', 'forest')", (pid,))
    with db, db.cursor() as cur:
        assert write_photos(cur, [{**item, "sequencer": "30"}]) == [(pid, "tagged")]
        cur.execute("SELECT album, photos FROM scene_albums('alice')")
        assert cur.fetchall() == [("forest", 1)]
        _check(cur)
    for label in (" forest", "forest ", "\tforest", "forest\n", "\u00a0forest", "forest\u3000"):
        refused = pytest.raises(psycopg2.errors.InvalidParameterValue, match="white space around")
        with refused, db, db.cursor() as cur:
            cur.execute("SELECT * FROM add_to_album('alice', %s, 'scene', %s)", (pid, label))
    with db, db.cursor() as cur:  # inside a label, white space is the label's
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'scene', 'forest path')", (pid,))
        _check(cur)


def test_a_label_that_shows_wrongly_or_like_another_is_refused(db) -> None:
    """Control characters anywhere, bidirectional controls, and invisible format characters
    at an end are refused in one line (0028): each made an album beside the one it looks
    like. ZWNJ and ZWJ inside a label, and accents, are the label's."""
    import psycopg2.errors

    with db, db.cursor() as cur:
        item = {"owner": "alice", "bucket": "b", "key": "a.jpg", "status": "tagged",
                "model_version": "m", "albums": [["city", 0.9]], "matches": []}  # fmt: skip
        ((pid, _),) = write_photos(cur, [item])
    refused = {
        "ci\nty": "control character",
        "ci\tty": "control character",
        "ci\x85ty": "control character",
        "ci\u2028ty": "control character",
        "\u202ecity": "control character",
        "city\u2067": "control character",
        "city\u200b": "invisible character",
        "\ufeffcity": "invisible character",
        "\u200d": "invisible character at an end",
        "city\u00ad": "invisible character at an end",
        "\u3164": "invisible character at an end",  # Hangul filler: shows blank
        "city\u2800": "invisible character at an end",
        "city\U000e0020": "invisible character",
        "ci\u200bty": "invisible character",
        "city\u206a": "invisible character at an end",
    }
    for label, reason in refused.items():
        with pytest.raises(psycopg2.errors.InvalidParameterValue) as err, db, db.cursor() as cur:
            cur.execute("SELECT * FROM add_to_album('alice', %s, 'scene', %s)", (pid, label))
        line = err.value.diag.message_primary
        assert reason in line and "\n" not in line, (label, line)
    kept = [
        "caf\u00e9 terrace",
        "\u0645\u06cc\u200c\u062f\u0627\u0646",
        "\U0001f468\u200d\U0001f469",
        "love \u2764\ufe0f",  # an emoji's variation selector ends the label
    ]
    with db, db.cursor() as cur:
        for label in kept:
            cur.execute("SELECT * FROM add_to_album('alice', %s, 'scene', %s)", (pid, label))
        cur.execute("SELECT album FROM scene_albums('alice')")
        albums_now = {r[0] for r in cur.fetchall()}
        _check(cur)
    assert albums_now == {"city", *kept}
