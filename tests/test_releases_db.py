"""Release files and the database: format, import refusals, atomic activation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from models.centroids import build_centroids
from models.landmarks import Thresholds
from models.release import ReleaseError, load_release, make_release, save_release
from sightline.albums import landmark_albums
from tests.support import run_cli, wait_for
from tests.synthetic_landmarks import insert_photos, make_world, photos, references
from workers.db import connect
from workers.releases import ReleaseRefused, activate, import_release
from workers.retag import retag_release

MODEL = "test-model+abc"


def _release(version: str = "v1", model: str = MODEL, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    world = make_world(rng, [2, 1, 1], dim=dim)
    e, lab = photos(rng, world, [60, 60, 20])
    cs = build_centroids(e, lab, min_cluster=50)
    refs, rl = references(rng, world)
    rows = [{**r, "photos": int((lab == i).sum())} for i, r in enumerate(world.landmark_rows())]
    rel = make_release(
        version=version,
        model_version=model,
        thresholds=Thresholds(geo=0.7, general=0.8, verify=0.7),
        landmarks=rows,
        centroids=cs.centroids,
        centroid_landmarks=cs.labels,
        references=refs,
        reference_landmarks=rl,
    )
    return rel, world, rng


def test_release_file_round_trip_and_corruption(tmp_path) -> None:
    """A release file loads back identical; a tampered one is refused, never unpickled."""
    rel, _, _ = _release()
    path = tmp_path / "r.npz"
    digest = save_release(rel, path)
    back = load_release(path)
    assert back.content_hash() == digest == rel.content_hash()
    assert back.manifest() == rel.manifest()
    np.testing.assert_array_equal(back.centroids, rel.centroids)
    data = dict(np.load(path))
    data["centroids"] = data["centroids"][:, ::-1].copy()  # still unit vectors, other content
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(ReleaseError, match="does not match its manifest hash"):
        load_release(tmp_path / "bad.npz")
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(ReleaseError, match="not a sightline release"):
        load_release(tmp_path / "obj.npy")


@pytest.mark.slow
def test_import_refused_on_model_or_dim_mismatch(db_url, tmp_path) -> None:
    """A release from another model, or of another width, is refused in one line; nothing
    is written."""
    conn = connect(db_url)
    rng = np.random.default_rng(5)
    e = rng.standard_normal((3, 32)).astype(np.float32)
    insert_photos(
        conn, e / np.linalg.norm(e, axis=1, keepdims=True), np.full((3, 2), np.nan), MODEL
    )
    env = {"DATABASE_URL": db_url}
    other_model, _, _ = _release(model="other-model+def")
    save_release(other_model, tmp_path / "m.npz")
    r = run_cli("release", "import", str(tmp_path / "m.npz"), env=env)
    assert r.returncode == 2, r.stderr
    assert "other-model+def" in r.stderr and MODEL in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    wide, _, _ = _release(dim=48)
    with pytest.raises(ReleaseRefused, match="dim 48 != stored photos' dim 32"):
        import_release(conn, wide)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM releases), (SELECT count(*) FROM centroids)")
        assert cur.fetchone() == (0, 0)
    good, _, _ = _release()
    save_release(good, tmp_path / "g.npz")
    r = run_cli("release", "import", str(tmp_path / "g.npz"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert '"result": "imported"' in r.stdout
    assert import_release(conn, good) == "unchanged"  # same file again: a no-op
    changed, _, _ = _release(seed=9)
    with pytest.raises(ReleaseRefused, match="already imported with other content"):
        import_release(conn, changed)
    conn.close()


def test_activation_is_atomic_and_needs_a_complete_retag(db_url) -> None:
    """Readers see one complete release's albums before and after a switch, never a mix;
    a release not yet re-tagged cannot be activated."""
    conn = connect(db_url)
    a, world, rng = _release("A")
    b = make_release(
        version="B",
        model_version=MODEL,
        thresholds=Thresholds(geo=0.7, general=0.8, verify=0.7),
        landmarks=world.landmark_rows(),
        centroids=a.centroids,
        centroid_landmarks=a.centroid_landmarks,
        references=a.references,
        reference_landmarks=a.reference_landmarks,
    )
    e, _ = photos(rng, world, 5)
    insert_photos(conn, e, np.full((len(e), 2), np.nan), MODEL)
    for rel in (a, b):
        import_release(conn, rel)
    with pytest.raises(ReleaseRefused, match="not ready"):
        activate(conn, "A")
    retag_release(conn, "A", progress=False)  # completes, then activates A
    retag_release(conn, "B", progress=False, make_active=False)
    reader = connect(db_url)
    with reader, reader.cursor() as cur:
        expected = {r["landmark_id"]: r["photos"] for r in landmark_albums(cur, "alice")}
    assert sum(expected.values()) > 0
    seen: list[tuple[set, dict]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            with reader, reader.cursor() as cur:
                rows = landmark_albums(cur, "alice")
            seen.append(
                ({r["release"] for r in rows}, {r["landmark_id"]: r["photos"] for r in rows})
            )

    t = threading.Thread(target=read)
    t.start()
    wait_for(lambda: len(seen) >= 5, what="reads before the switch")
    assert activate(conn, "B") == "A"
    n = len(seen)
    wait_for(lambda: len(seen) >= n + 5, what="reads after the switch")
    stop.set()
    t.join()
    reader.close()
    assert {next(iter(rels)) for rels, _ in seen} == {"A", "B"}
    assert all(len(rels) == 1 and albums == expected for rels, albums in seen)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT version, status FROM releases ORDER BY 1")
        assert cur.fetchall() == [("A", "retired"), ("B", "active")]
    with pytest.raises(ReleaseRefused, match="retired, not ready"):
        activate(conn, "A")  # retired: new photos were not matched against it meanwhile
    conn.close()
