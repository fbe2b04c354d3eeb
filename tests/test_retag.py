"""Re-tag without the network: same matches as in memory, idempotent, resumable after SIGKILL,
scene albums re-filed under a new map."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from models.centroids import build_centroids
from models.landmarks import Thresholds
from models.release import make_release
from models.scenes import SceneMap
from tests.support import ROOT, run_cli, wait_for
from tests.synthetic_landmarks import insert_photos, make_world, negatives, photos, references
from workers.db import connect
from workers.releases import import_release
from workers.retag import retag_release, retag_scenes

MODEL = "test-model+abc"


def _setup(conn, n_negatives: int, versions=("A",), seed: int = 0):
    rng = np.random.default_rng(seed)
    world = make_world(rng, [2, 1, 1, 1], dim=32)
    e, lab = photos(rng, world, [60, 60, 60, 10])
    cs = build_centroids(e, lab, min_cluster=50)
    refs, rl = references(rng, world)
    for v in versions:
        import_release(
            conn,
            make_release(
                version=v,
                model_version=MODEL,
                thresholds=Thresholds(geo=0.6, general=0.8, verify=0.7),
                landmarks=world.landmark_rows(),
                centroids=cs.centroids,
                centroid_landmarks=cs.labels,
                references=refs,
                reference_landmarks=rl,
            ),
        )
    pe, pl = photos(rng, world, 8)
    q = np.concatenate([pe, negatives(rng, world, n_negatives, n_negatives // 10)])
    gps = np.full((len(q), 2), np.nan)
    gps[: len(pe) : 2] = np.stack([world.lats[pl[::2]], world.lons[pl[::2]]], axis=1)
    ids = insert_photos(conn, q, gps, MODEL)
    return world, q, gps, ids


def _matches(conn, version: str) -> list[tuple]:
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT photo_id, landmark_id, round(score::numeric, 5) FROM landmark_matches "
            "WHERE release = %s ORDER BY 1, 2",
            (version,),
        )
        return cur.fetchall()


def test_retag_matches_like_the_matcher_and_is_idempotent(db_url) -> None:
    """Stored embeddings re-matched in batches give the in-memory matches; a second run
    changes nothing; other models' photos are left alone; albums switch when complete."""
    conn = connect(db_url)
    _world, q, gps, ids = _setup(conn, 300)
    other = insert_photos(conn, q[:5], gps[:5], "another-model", owner="bob")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM landmark_albums('alice')")
        assert cur.fetchone()[0] == 0
    s = retag_release(conn, "A", batch_size=37, progress=False)
    assert (s.photos, s.status) == (len(q), "active")
    from workers.releases import load_index

    with conn, conn.cursor() as cur:
        cur.execute("SELECT embedding_dim, thresholds FROM releases WHERE version = 'A'")
        idx = load_index(cur, "A", *cur.fetchone())
    want = sorted(
        (ids[p], idx.landmark_ids[m.landmark], round(m.score, 5))
        for p, ms in enumerate(idx.match(q, gps))
        for m in ms
    )
    got = _matches(conn, "A")
    assert [g[:2] for g in got] == [w[:2] for w in want] and len(got) > 20
    # Photos store float16 embeddings: a unit vector's inner product moves by < 2^-11.
    np.testing.assert_allclose([float(g[2]) for g in got], [w[2] for w in want], atol=5e-4)
    assert not {g[0] for g in got} & set(other)
    again = retag_release(conn, "A", batch_size=1000, progress=False)
    assert again.photos == len(q) and _matches(conn, "A") == got
    with conn, conn.cursor() as cur:
        cur.execute("SELECT sum(photos) FROM landmark_albums('alice')")
        assert cur.fetchone()[0] == len({g[0] for g in got})
    conn.close()


@pytest.mark.slow
def test_killed_retag_resumes_to_the_uninterrupted_result(db_url) -> None:
    """A re-tag process killed with SIGKILL mid-run resumes from its cursor, keeps the albums
    on the old release meanwhile, and ends with exactly the matches of an unbroken run."""
    conn = connect(db_url)
    _setup(conn, 30_000, versions=("A", "B"))
    env = dict(os.environ, DATABASE_URL=db_url, PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "sightline",
        "retag",
        "--local",
        "--release",
        "A",
        "--batch-size",
        "100",
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def cursor() -> int:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT retag_cursor, status FROM releases WHERE version = 'A'")
            return cur.fetchone()

    wait_for(lambda: cursor()[0] > 0, timeout=120, interval=0.02, what="first batch")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    at_kill, status = cursor()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT max(id) FROM photos")
        last = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM landmark_albums('alice')")
        albums_during = cur.fetchone()[0]
    assert 0 < at_kill < last and status == "retagging"  # really killed mid-run
    assert albums_during == 0  # no release is active yet: albums did not switch to a partial one
    r = run_cli("retag", "--local", "--release", "A", "--batch-size", "700", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert f'"resumed_from": {at_kill}' in r.stdout
    retag_release(conn, "B", batch_size=5000, progress=False, make_active=False)
    assert _matches(conn, "A") == _matches(conn, "B")
    assert len(_matches(conn, "A")) > 20
    assert cursor()[1] == "active"
    conn.close()


def test_new_scene_map_refiles_albums_from_stored_probabilities(db_url, tmp_path) -> None:
    """A new scene map re-files every photo's scene albums from its stored probabilities."""
    conn = connect(db_url)
    sm = SceneMap.load()
    n = len(sm.categories)
    probs = np.full((3, n), 0.1 / (n - 1), dtype=np.float32)
    forest = [sm.categories.index(c) for c in ("bamboo_forest", "rainforest")]
    probs[0, forest[0]] = probs[1, forest[1]] = probs[2, sm.categories.index("beach")] = 0.9
    with conn, conn.cursor() as cur:
        for i, p in enumerate(probs):
            cur.execute(
                "INSERT INTO photos (owner, bucket, key, status, scene_probs) "
                "VALUES ('alice', 'b', %s, 'tagged', %s)",
                (f"k{i}", [float(x) for x in p]),
            )
    text = (ROOT / "models" / "data" / "scene_map.csv").read_text()
    lines = [
        "rainforest,jungle" if ln.startswith("rainforest,") else ln for ln in text.splitlines()
    ]
    (tmp_path / "map.csv").write_text("\n".join(lines) + "\n")
    assert retag_scenes(conn, SceneMap.load(tmp_path / "map.csv"), batch_size=2, progress=False)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT album FROM photo_albums WHERE rank = 1 ORDER BY photo_id")
        beach_album = sm.albums_by_class[sm.categories.index("beach")]
        assert [r[0] for r in cur.fetchall()] == ["forest", "jungle", beach_album]
    conn.close()


def test_scene_refile_leaves_out_sift_classes_like_serving(db_url) -> None:
    """Re-filing under a sift list zeroes those classes and renormalises the rest, as the
    worker does: a photo whose best class is now sifted goes to another album."""
    conn = connect(db_url)
    sm = SceneMap.load()
    n = len(sm.categories)
    probs = np.full(n, 0.1 / (n - 1), dtype=np.float32)
    probs[sm.categories.index("beach")] = 0.9
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO photos (owner, bucket, key, status, scene_probs) "
            "VALUES ('alice', 'b', 'k', 'tagged', %s)",
            ([float(x) for x in probs],),
        )
    sifted = SceneMap.load(excluded=frozenset({"beach"}))
    assert retag_scenes(conn, sifted, progress=False) == 1
    with conn, conn.cursor() as cur:
        cur.execute("SELECT album, score FROM photo_albums ORDER BY rank")
        rows = cur.fetchall()
    conn.close()
    beach_album = sm.albums_by_class[sm.categories.index("beach")]
    assert rows and rows[0][0] != beach_album
    # Renormalised over the kept classes: the best album scores more than its raw share.
    kept = sifted.keep()
    best_raw = float(probs[kept] @ sifted.matrix()[kept][:, sifted.albums.index(rows[0][0])])
    assert rows[0][1] == pytest.approx(best_raw / float(probs[kept].sum()), rel=1e-5)
