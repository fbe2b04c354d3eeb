"""0017_owner_partitions on a database filled by the schema before it (0001..0016): every row,
id and sequence kept, the same album answers and summaries, owner in every key, the photo
tables hash-partitioned by owner into the requested count, and writes working afterwards."""

from __future__ import annotations

import re

import numpy as np
import psycopg2
import pytest

from sightline import albums
from sightline.status import tagged_heads
from workers import migrate
from workers.db import DatabaseError, connect
from workers.photo_copy import write_photos_copy
from workers.store import write_photos

PARTITIONS = "0017_owner_partitions"
OWNERS = ("alice", "bob", "carol", "dave", "erin")
TABLES = ("photos", "photo_scenes", "photo_albums", "landmark_matches", "photo_corrections")
# The tables that hold them at the head: 0025 keeps a photo's scene rows in one row of
# photo_scene_sets, and photo_scenes is a view giving the same rows.
STORED = ("photos", "photo_scene_sets", "photo_albums", "landmark_matches", "photo_corrections")
SCENES = ("forest", "beach", "hotel", "museum")


def _items(rng: np.random.Generator, n: int, prefix: str = "k") -> list[dict]:
    out = []
    for i in range(n):
        status = "tagged" if i % 9 else ("failed", "deleted")[i % 2]
        item = {
            "owner": OWNERS[i % len(OWNERS)],
            "bucket": "b",
            "key": f"users/{OWNERS[i % len(OWNERS)]}/{prefix}{i}.jpg",
            "status": status,
            "sequencer": f"{i:016X}",
            "error": None if status == "tagged" else "corrupt or truncated image: x",
            "taken_at": None if i % 7 == 0 else f"2023-{1 + i % 12:02d}-0{1 + i % 9}T00:00:00Z",
        }
        if status == "tagged":
            emb = rng.standard_normal(16)
            probs = rng.dirichlet(np.ones(365))
            top = np.argsort(-probs)[:5]
            item.update(
                model_version="m",
                model_trained=bool(i % 3),
                embedding=(emb / np.linalg.norm(emb)).tolist(),
                scene_probs=probs.tolist(),
                scenes=[[f"class{j}", float(probs[j])] for j in top],
                albums=[[SCENES[i % 4], 0.5], [SCENES[(i + 1) % 4], 0.2]],
                matches=[["r1", ("eiffel", "louvre")[i % 2], 0.9]] if i % 4 == 0 else [],
            )
        out.append(item)
    return out


def _reads(cur) -> dict:
    """Every album answer a UI gets, every page of every album, per owner."""
    got: dict = {}
    for owner in (*OWNERS, "nobody"):
        scenes = albums.scene_albums(cur, owner)
        marks = albums.landmark_albums(cur, owner)
        got[owner, "scene_albums"] = scenes
        got[owner, "landmark_albums"] = marks
        for kind, names in (
            ("scene", [r["album"] for r in scenes]),
            ("landmark", [r["landmark_id"] for r in marks]),
        ):
            for album in names:
                pages, after = [], None
                while True:
                    page = albums.album_photos(cur, owner, kind, album, after=after, limit=3)
                    pages += page
                    if len(page) < 3:
                        break
                    after = (page[-1]["sort_at"], page[-1]["photo_id"])
                got[owner, kind, album] = pages
    return got


def _rows(cur) -> dict:
    """Every row of every photo table (photo_scenes without 0017's owner column), the
    summaries, the status counters and the id sequence."""
    got = {}
    cur.execute("SELECT to_regclass('photo_scene_names') IS NOT NULL")
    names = cur.fetchone()[0]  # 0021: scene rows name their class by id, read by name here
    for table in (*TABLES, "album_summaries"):
        source = "photo_scene_names" if table == "photo_scenes" and names else table
        drop = " - 'owner'" if table == "photo_scenes" else ""
        cur.execute(f"SELECT (to_jsonb(t){drop})::text AS r FROM {source} t ORDER BY 1")
        got[table] = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT status, sum(photos) FROM photo_status_counts GROUP BY 1 ORDER BY 1")
    got["status_counts"] = cur.fetchall()
    cur.execute("SELECT last_value FROM photos_id_seq")
    got["sequence"] = cur.fetchone()
    return got


def _summaries_equal_a_rebuild(cur) -> bool:
    """The trigger-kept summaries against sightline_album_summaries_rebuild()'s recount."""
    query = (
        "SELECT owner, kind, release, album, photos, untrained, cover_photo_id "
        "FROM album_summaries WHERE photos > 0 ORDER BY 1, 2, 3, 4"
    )
    cur.execute(query)
    kept = cur.fetchall()
    cur.execute("SAVEPOINT rebuild")
    cur.execute("SELECT sightline_album_summaries_rebuild()")
    cur.execute(query)
    rebuilt = cur.fetchall()
    cur.execute("ROLLBACK TO SAVEPOINT rebuild")
    return kept == rebuilt and len(kept) > 0


@pytest.fixture
def filled_0016(empty_db_url, monkeypatch):
    """A database at 0016 filled through the real write paths (per-photo function and COPY),
    with an active release, matches, hides, adds and a deleted photo; returns
    (url, items, every migration)."""
    every = migrate.available()
    monkeypatch.setattr(migrate, "available", lambda: [m for m in every if m.version < PARTITIONS])
    migrate.upgrade(empty_db_url)
    rng = np.random.default_rng(16)
    items = _items(rng, 90)
    conn = connect(empty_db_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status) "
            "VALUES ('r1', 16, 'm', '{}', 'active')"
        )
        cur.execute(
            "INSERT INTO landmarks (release, landmark_id, name, city, country) VALUES "
            "('r1', 'eiffel', 'Eiffel Tower', 'Paris', 'France'), "
            "('r1', 'louvre', 'Louvre', 'Paris', 'France')"
        )
        assert [o for _, o in write_photos(cur, items[:45])] == [i["status"] for i in items[:45]]
        assert [o for _, o in write_photos_copy(cur, items[45:])] == [
            i["status"] for i in items[45:]
        ]
        write_photos(cur, items[10:20])  # redelivered: rewrites, not new rows
        cur.execute("SELECT id, owner FROM photos WHERE status = 'tagged' ORDER BY id")
        tagged = cur.fetchall()
        for pid, owner in tagged[:6]:
            cur.execute("SELECT * FROM hide_from_album(%s, %s, 'scene', 'forest')", (owner, pid))
        for pid, owner in tagged[6:10]:
            cur.execute("SELECT * FROM add_to_album(%s, %s, 'landmark', 'louvre')", (owner, pid))
            cur.execute("SELECT * FROM add_to_album(%s, %s, 'scene', 'lake')", (owner, pid))
        cur.execute("DELETE FROM photos WHERE id = %s", (tagged[-1][0],))
    conn.close()
    return empty_db_url, items, every


def test_partition_migration_keeps_every_row_answer_and_summary(filled_0016, monkeypatch) -> None:
    url, _items_0016, every = filled_0016
    conn = connect(url)
    with conn, conn.cursor() as cur:
        before_rows = _rows(cur)
        before_reads = _reads(cur)
    conn.close()
    assert all(before_rows[t] for t in (*TABLES, "album_summaries"))  # every table has rows
    assert sum(len(v) for k, v in before_reads.items() if len(k) == 3) > 60  # pages were read

    monkeypatch.setattr(migrate, "available", lambda: every)
    later = [m.version for m in every if m.version >= PARTITIONS]  # 0017 and what follows it
    assert migrate.upgrade(url, partitions=3) == later
    assert migrate.photo_partitions(url) == 3
    conn = connect(url)
    with conn, conn.cursor() as cur:
        assert _rows(cur) == before_rows
        assert _reads(cur) == before_reads
        assert _summaries_equal_a_rebuild(cur)
        # 0023 counted the library's tagged photos per model version and provenance
        cur.execute(
            "SELECT model_version, scene_trained, embedding_trained, count(*) FROM photos "
            "WHERE status = 'tagged' GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1"
        )
        tagged = cur.fetchall()
        assert tagged and [tuple(h.values()) for h in tagged_heads(cur)] == tagged
        for table in STORED:
            cur.execute(
                "SELECT p.partstrat, (SELECT count(*) FROM pg_inherits i "
                "WHERE i.inhparent = p.partrelid), a.attname "
                "FROM pg_partitioned_table p "
                "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
                "WHERE p.partrelid = %s::regclass",
                (table,),
            )
            assert cur.fetchone() == ("h", 3, "owner"), table
        # owner in every primary, unique and foreign key of the photo tables.
        cur.execute(
            "SELECT c.conrelid::regclass::text, c.conname, c.contype, "
            "(SELECT array_agg(a.attname) FROM pg_attribute a "
            " WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)) "
            "FROM pg_constraint c WHERE c.contype IN ('p', 'u', 'f') "
            "AND c.conrelid = ANY(%s::regclass[]) AND c.conparentid = 0",
            (list(STORED),),
        )
        keys = cur.fetchall()
        landmark_fk = "landmark_matches_release_landmark_id_fkey"  # to a reference table
        assert {(t, k) for t, _, k, _ in keys} >= {(t, "p") for t in STORED}
        # 0025: a photo's scene set is keyed by its photo; photo_scenes is a view of it.
        assert ("photo_scene_sets", "photo_scene_sets_pkey", "p", ["photo_id", "owner"]) in [
            (t, n, k, sorted(c, reverse=True)) for t, n, k, c in keys
        ]
        cur.execute("SELECT relkind FROM pg_class WHERE relname = 'photo_scenes'")
        assert cur.fetchall() == [("v",)]
        cur.execute("SELECT conname FROM pg_constraint WHERE conname LIKE '%%0021%%'")
        assert cur.fetchall() == []  # 0021's rebuilt table keeps no name of its copy
        assert [k for k in keys if "owner" not in k[3] and k[1] != landmark_fk] == []
        # 0019: each tag partition's key references the photos partition of the same bounds.
        cur.execute(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, "
            "pg_get_expr(a.relpartbound, a.oid) = pg_get_expr(b.relpartbound, b.oid) "
            "FROM pg_constraint c JOIN pg_class a ON a.oid = c.conrelid "
            "JOIN pg_class b ON b.oid = c.confrelid "
            "WHERE c.contype = 'f' AND b.relname LIKE 'photos\\_p%%'"
        )
        fks = cur.fetchall()
        assert len(fks) == 4 * 3 and all(same for _, _, same in fks), fks
        # An owner's album functions read one partition of each table.
        cur.execute(
            "EXPLAIN SELECT * FROM album_membership WHERE owner = 'alice' AND kind = 'scene'"
        )
        plan = " ".join(r[0] for r in cur.fetchall())
        scanned = re.findall(r"\b(photos|photo_albums|photo_corrections)_p(\d+)\b", plan)
        assert {t for t, _ in scanned} == {"photos", "photo_albums", "photo_corrections"}
        assert len({n for _, n in scanned}) == 1, plan  # the owner's partition, pruned
    conn.close()


def test_writes_after_the_partition_migration(filled_0016, monkeypatch) -> None:
    url, _items_0016, every = filled_0016
    monkeypatch.setattr(migrate, "available", lambda: every)
    migrate.upgrade(url)  # the default count
    assert migrate.photo_partitions(url) == migrate.DEFAULT_PHOTO_PARTITIONS
    conn = connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT max(id) FROM photos")
        last_id = cur.fetchone()[0]
        fresh = _items(np.random.default_rng(1), 20, prefix="new")
        written = write_photos(cur, fresh[:10]) + write_photos_copy(cur, fresh[10:])
        assert [o for _, o in written] == [i["status"] for i in fresh]
        assert min(pid for pid, _ in written if pid) > last_id  # the sequence went on
        # Redelivery rewrites in place: one row per (bucket, key, owner).
        assert write_photos_copy(cur, fresh[:3]) and write_photos(cur, fresh[:3])
        cur.execute("SELECT count(*), count(DISTINCT (bucket, key)) FROM photos")
        n, distinct = cur.fetchone()
        assert n == distinct
        # An object written again under another owner moves: the old owner's row goes.
        moved = {**fresh[1], "owner": "zoe", "sequencer": "FFFFFFFFFFFFFFFF"}
        [(pid, outcome)] = write_photos(cur, [moved])
        assert outcome == "tagged"
        cur.execute("SELECT owner, id FROM photos WHERE key = %s", (moved["key"],))
        assert cur.fetchall() == [("zoe", pid)]
        assert [r["album"] for r in albums.scene_albums(cur, "zoe")] != []
        # The COPY path moves an object alike.
        moved2 = {**fresh[2], "owner": "yann", "sequencer": "FFFFFFFFFFFFFFFF"}
        [(pid2, outcome2)] = write_photos_copy(cur, [moved2])
        assert outcome2 == "tagged"
        cur.execute("SELECT owner, id FROM photos WHERE key = %s", (moved2["key"],))
        assert cur.fetchall() == [("yann", pid2)]
        # ... and an older event for the old owner is stale, on both paths.
        old = {**fresh[1], "sequencer": "0000000000000001"}
        assert write_photos(cur, [old]) == [(None, "stale")]
        assert write_photos_copy(cur, [old]) == [(None, "stale")]
        # Corrections, deletes and status changes keep the summaries right.
        cur.execute("SELECT * FROM hide_from_album('zoe', %s, 'scene', %s)", (pid, SCENES[1]))
        cur.execute("SELECT undo_correction('zoe', %s, 'scene', %s)", (pid, SCENES[1]))
        cur.execute("SELECT * FROM add_to_album('zoe', %s, 'scene', 'lake')", (pid,))
        cur.execute("DELETE FROM photos WHERE id IN (SELECT id FROM photos ORDER BY id LIMIT 3)")
        write_photos(cur, [{**fresh[4], "status": "failed", "error": "x", "sequencer": "F" * 16}])
        assert _summaries_equal_a_rebuild(cur)
        cur.execute("SELECT status, count(*) FROM photos GROUP BY 1 ORDER BY 1")
        truth = cur.fetchall()
        cur.execute(
            "SELECT status, sum(photos) FROM photo_status_counts GROUP BY 1 "
            "HAVING sum(photos) > 0 ORDER BY 1"
        )
        assert cur.fetchall() == truth
    # The owner never changes in place: refused in one line, nothing changed.
    with (
        pytest.raises(psycopg2.errors.FeatureNotSupported, match="owner cannot change"),
        conn,
        conn.cursor() as cur,
    ):
        cur.execute("UPDATE photos SET owner = 'mallory' WHERE id = %s", (pid,))
    conn.close()
    # The count is fixed once 0017 ran.
    with pytest.raises(DatabaseError, match="already have 8 partitions"):
        migrate.upgrade(url, partitions=16)
    assert migrate.upgrade(url, partitions=8) == []


@pytest.mark.parametrize("bad", ["0", "129", "eight"])
def test_a_bad_partition_count_is_refused_in_one_line(empty_db_url, bad) -> None:
    """The setting is checked by the migration itself (here a database-level SET), and
    nothing is applied when it is wrong; upgrade() refuses a bad count before connecting."""
    with pytest.raises(DatabaseError, match="partitions must be 1 to 128"):
        migrate.upgrade(empty_db_url, partitions=int(bad) if bad.isdigit() else 0)
    conn = psycopg2.connect(empty_db_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"ALTER DATABASE {conn.info.dbname} SET sightline.photo_partitions = '{bad}'")
    conn.close()
    with pytest.raises(psycopg2.Error, match="photo_partitions must be a whole number"):
        migrate.upgrade(empty_db_url)
    assert migrate.applied(empty_db_url) == []
