"""Half precision keeps the results: photos store embeddings and scene probabilities as
halfvec (float16), and a re-tag or a scene re-map from them gives what float32 gives.

Tolerance, from float16's 11 significant bits (round to nearest: a relative error <= 2^-11
per value): the inner product of two unit vectors moves by <= 2^-11 (< 5e-4); an album score
(a sum of renormalised probabilities, each off by <= 2^-11 of itself, divided by a sum off by
as much) by <= 2^-10 of itself. Matches and albums must be the same except where the float32
value lies within that tolerance of a threshold or of the next album (a near-tie, which either
side may win). On the benches' synthetic data no landmark score lies that close to a
threshold, so every match is the same; a few photos' two best albums do.
"""

from __future__ import annotations

import numpy as np

from models.scenes import SceneMap
from sightline.benches._synthetic import queries, random_release
from workers.db import connect
from workers.releases import import_release
from workers.retag import retag_release, retag_scenes
from workers.store import write_photos

SCORE_TOL = 5e-4  # > 2^-11
ALBUM_REL = 2**-10  # of the album's score


def _store(conn, q: np.ndarray, gps: np.ndarray, probs: np.ndarray, model: str) -> list[int]:
    """Write photos as the worker does (JSON floats -> halfvec); their ids in order."""
    items = [
        {
            "owner": f"user{i % 3}",
            "bucket": "b",
            "key": f"p/{i}.jpg",
            "status": "tagged",
            "taken_at": f"2024-01-01T00:00:{i % 60:02d}+00:00",
            "gps_lat": None if np.isnan(gps[i, 0]) else float(gps[i, 0]),
            "gps_lon": None if np.isnan(gps[i, 1]) else float(gps[i, 1]),
            "model_version": model,
            "model_trained": True,
            "embedding": q[i].tolist(),
            "scene_probs": probs[i].tolist(),
        }
        for i in range(len(q))
    ]
    ids = []
    with conn, conn.cursor() as cur:
        for lo in range(0, len(items), 200):
            got = write_photos(cur, items[lo : lo + 200])
            assert all(o == "tagged" for _, o in got), got[:3]
            ids += [pid for pid, _ in got]
    return ids


def test_retag_and_scene_remap_from_halfvec_match_float32(db_url) -> None:
    """The bench's synthetic release and photos (2 % near a landmark, half with GPS) and
    Dirichlet scene probabilities: the landmark re-tag from stored halfvec embeddings gives
    float32's matching pairs with scores within 5e-4, and the scene re-map from stored
    halfvec probabilities files every photo in float32's albums with scores within 2^-10 of
    themselves, but for near-ties (two albums that close), where either is right."""
    rng = np.random.default_rng(7)
    release = random_release(rng, centroids=400, dim=512)
    q, gps = queries(rng, release, 3000, landmark_share=0.05)
    sm = SceneMap.load()
    probs = rng.dirichlet(np.full(len(sm.categories), 0.1), size=len(q)).astype(np.float32)
    conn = connect(db_url, timeout_s=300)
    import_release(conn, release)
    ids = np.asarray(_store(conn, q, gps, probs, release.model_version))
    with conn, conn.cursor() as cur:  # half precision: an 8-byte header, then 2 bytes a value
        cur.execute("SELECT pg_column_size(embedding), pg_column_size(scene_probs) FROM photos")
        assert set(cur.fetchall()) == {(8 + 2 * 512, 8 + 2 * len(sm.categories))}

    # Landmarks: the in-memory matcher on float32 is what the re-tag did before halfvec.
    want = release.index().match_arrays(q, gps)
    assert len(want.photo) > 50
    summary = retag_release(conn, release.version, batch_size=1000, progress=False)
    assert summary.photos == len(q)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT photo_id, landmark_id, score FROM landmark_matches WHERE release = %s",
            (release.version,),
        )
        got = {(pid, lid): s for pid, lid, s in cur.fetchall()}
    expected = {
        (int(ids[p]), release.index().landmark_ids[j]): float(s)
        for p, j, s in zip(want.photo, want.landmark, want.score)
    }
    assert set(got) == set(expected)
    diffs = np.array([abs(got[k] - expected[k]) for k in expected])
    assert diffs.max() <= SCORE_TOL and diffs.max() > 0  # moved, but within the bound

    # Scenes: the re-map from stored probabilities against the map applied to float32.
    assert retag_scenes(conn, sm, progress=False) == len(q)
    # The filing rule (0011: thresholds, at most k albums; the shipped map has no thresholds,
    # so each photo is in its best album only).
    want_albums = sm.file(sm.renormalise(probs), k=3)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT photo_id, rank, album, score FROM photo_albums ORDER BY 1, 2")
        stored: dict[int, list[tuple[str, float]]] = {}
        for pid, _rank, album, score in cur.fetchall():
            stored.setdefault(pid, []).append((album, score))
    scores32 = sm.renormalise(probs) @ sm.matrix()  # (photos, albums), float32
    column = {a: j for j, a in enumerate(sm.albums)}
    ties = 0
    for i, (pid, w) in enumerate(zip(ids.tolist(), want_albums)):
        s = stored[pid]
        assert len(s) == len(w)
        for r, (album, score) in enumerate(s):
            # The stored score is the album's float32 score within the bound, and the album
            # is float32's at this rank, or one within the bound of it (a near-tie).
            tol = ALBUM_REL * w[r][1] + 1e-7
            assert abs(scores32[i, column[album]] - score) <= tol
            assert scores32[i, column[album]] >= w[r][1] - 2 * tol
        top2 = np.sort(scores32[i])[-2:]  # float32's best two album scores
        near_tie = top2[1] - top2[0] <= 2 * ALBUM_REL * top2[1]
        ties += near_tie
        if not near_tie:
            assert s[0][0] == w[0][0]
    assert ties < len(q) // 20
    # ... so the albums the UI shows are float32's, but for those near-ties.
    with conn, conn.cursor() as cur:
        cur.execute("SELECT album, photos FROM scene_albums('user0')")
        shown = dict(cur.fetchall())
    counts: dict[str, int] = {}
    for i, w in enumerate(want_albums):
        if i % 3 == 0:
            counts[w[0][0]] = counts.get(w[0][0], 0) + 1
    moved = sum(abs(shown.get(a, 0) - counts.get(a, 0)) for a in set(shown) | set(counts))
    assert moved <= 2 * ties and sum(shown.values()) == sum(counts.values())
    conn.close()


def test_an_embedding_of_another_width_for_the_same_model_is_refused(db) -> None:
    """One width per model version: a second width is a clear per-photo error; another model
    version may have another width (two models coexist during a switch)."""

    def item(key: str, model: str, dim: int) -> dict:
        return {
            "owner": "a",
            "bucket": "b",
            "key": key,
            "status": "tagged",
            "model_version": model,
            "embedding": [1.0] + [0.0] * (dim - 1),
        }

    with db, db.cursor() as cur:
        got = write_photos(cur, [item("1", "m1", 8), item("2", "m1", 16), item("3", "m2", 16)])
        cur.execute("SELECT model_version, embedding_dim FROM model_embeddings ORDER BY 1")
        models = cur.fetchall()
    assert got[0][1] == "tagged" and got[2][1] == "tagged"
    assert got[1] == (None, "error: embedding has 16 dims but model m1 stores 8")
    assert models == [("m1", 8), ("m2", 16)]
