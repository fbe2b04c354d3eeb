"""0012_storage on a database filled by the schema before it: float32 vectors become halfvec,
album memberships gain owner and sort key, summaries and status counters are built, and every
album query answers as it did before the upgrade."""

from __future__ import annotations

import numpy as np

from sightline import albums
from sightline.status import STATUSES, photo_counts
from workers import migrate
from workers.db import connect
from workers.store import write_photos

STORAGE = "0012_storage"


def _items(rng: np.random.Generator, n: int) -> list[dict]:
    out = []
    for i in range(n):
        status = "tagged" if i % 9 else ("failed", "deleted")[i % 2]
        item = {
            "owner": ("alice", "bob")[i % 2],
            "bucket": "b",
            "key": f"k{i}.jpg",
            "status": status,
            "error": None if status == "tagged" else "corrupt or truncated image: x",
            "taken_at": None if i % 7 == 0 else f"2023-{1 + i % 12:02d}-01T00:00:00+00:00",
        }
        if status == "tagged":
            emb = rng.standard_normal(16)
            item.update(
                model_version="m",
                model_trained=bool(i % 3),
                embedding=(emb / np.linalg.norm(emb)).tolist(),
                scene_probs=rng.dirichlet(np.ones(365)).tolist(),
                scenes=[["forest_path", 0.5]],
                albums=[[("forest", "beach", "hotel")[i % 3], 0.5], ["mountain", 0.2]],
                matches=[["r1", ("eiffel", "louvre")[i % 2], 0.9]] if i % 4 == 0 else [],
            )
        out.append(item)
    return out


def _reads(cur) -> dict:
    """Everything an album UI reads, every page of every album, per owner."""
    got: dict = {}
    for owner in ("alice", "bob", "nobody"):
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
                    page = albums.album_photos(cur, owner, kind, album, after=after, limit=4)
                    pages += page
                    if len(page) < 4:
                        break
                    after = (page[-1]["sort_at"], page[-1]["photo_id"])
                got[owner, kind, album] = pages
    return got


def test_storage_migration_keeps_every_album_answer(empty_db_url, monkeypatch) -> None:
    every = migrate.available()
    monkeypatch.setattr(migrate, "available", lambda: [m for m in every if m.version < STORAGE])
    migrate.upgrade(empty_db_url)
    rng = np.random.default_rng(3)
    items = _items(rng, 60)
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
        assert all(o == it["status"] for it, (_, o) in zip(items, write_photos(cur, items)))
        cur.execute(
            "SELECT pg_typeof(embedding)::text, pg_typeof(scene_probs)::text FROM photos "
            "WHERE embedding IS NOT NULL LIMIT 1"
        )
        assert cur.fetchone() == ("vector", "real[]")  # today's schema
        before = _reads(cur)
        cur.execute("SELECT status, count(*) FROM photos GROUP BY status")
        counts = dict(cur.fetchall())
        cur.execute(
            "SELECT id, embedding, scene_probs FROM photos WHERE embedding IS NOT NULL ORDER BY id"
        )
        vectors = cur.fetchall()
    conn.close()
    assert sum(len(v) for k, v in before.items() if len(k) == 3) > 40  # pages were read

    monkeypatch.setattr(migrate, "available", lambda: every)
    assert STORAGE in migrate.upgrade(empty_db_url)
    conn = connect(empty_db_url)
    with conn, conn.cursor() as cur:
        assert _reads(cur) == before
        got = photo_counts(cur)
        assert got == {**dict.fromkeys(STATUSES, 0), **counts, "total": sum(counts.values())}
        cur.execute(
            "SELECT id, embedding, scene_probs FROM photos WHERE embedding IS NOT NULL ORDER BY id"
        )
        after = cur.fetchall()
        cur.execute("SELECT * FROM model_embeddings")
        assert cur.fetchall() == [("m", 16)]
        # Writes after the upgrade keep the summaries: one more forest photo for alice.
        write_photos(cur, [{**items[6], "key": "new.jpg", "taken_at": "2030-01-01T00:00:00Z"}])
        cur.execute(
            "SELECT photos, cover_photo_id = (SELECT id FROM photos WHERE key = "
            "'new.jpg') FROM scene_albums('alice') WHERE album = 'forest'"
        )
        n_after, is_cover = cur.fetchone()
    conn.close()
    assert [a[0] for a in after] == [v[0] for v in vectors]
    for (_, emb, probs), (_, emb32, probs32) in zip(after, vectors):
        assert np.allclose(emb.to_numpy(), emb32.to_numpy(), rtol=2**-11, atol=1e-7)
        assert np.allclose(probs.to_numpy(), probs32, rtol=2**-11, atol=1e-7)
    n_before = next(r["photos"] for r in before["alice", "scene_albums"] if r["album"] == "forest")
    assert (n_after, is_cover) == (n_before + 1, True)
