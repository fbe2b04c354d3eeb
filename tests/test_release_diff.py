"""`sightline release diff` (before and after activation) and the generations of a model
switch: two active releases, each photo read through its own model's, retire by command."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from models.landmarks import Thresholds
from models.release import make_release, save_release
from tests.support import run_cli
from tests.synthetic_landmarks import insert_photos, negatives, photos
from tests.test_releases_db import MODEL, _release
from workers.db import connect
from workers.releases import activate, import_release
from workers.retag import retag_release


def _variant(base, version: str, model: str = MODEL, **thresholds: float):
    th = {"geo": 0.7, "general": 0.8, "verify": 0.7, **thresholds}
    return make_release(
        version=version,
        model_version=model,
        thresholds=Thresholds(**th),
        landmarks=[
            {"id": lid, "name": n, "city": c, "country": k, "lat": la, "lon": lo}
            for lid, n, c, k, la, lo in zip(
                base.landmark_ids, base.names, base.cities, base.countries, base.lats, base.lons
            )
        ],
        centroids=base.centroids,
        centroid_landmarks=base.centroid_landmarks,
        references=base.references,
        reference_landmarks=base.reference_landmarks,
    )


def _pairs(conn, version: str) -> set[tuple[int, str]]:
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT photo_id, landmark_id FROM landmark_matches WHERE release = %s", (version,)
        )
        return set(cur.fetchall())


def _albums(conn) -> dict[str, int]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT landmark_id, photos FROM landmark_albums('alice')")
        return dict(cur.fetchall())


@pytest.mark.slow
def test_release_diff_before_and_after_activation(db_url) -> None:
    """Gained and lost per landmark equal the difference of the two releases' stored
    matches, with totals and top N, both while NEW is only ready and after it is active; a
    release not yet re-tagged is refused in one line."""
    conn = connect(db_url)
    a, world, rng = _release("A")
    b = _variant(a, "B", general=0.7, verify=0.6, geo=0.95)  # looser without GPS, stricter with
    e, lab = photos(rng, world, 30)
    q = np.concatenate([e, negatives(rng, world, 200, 20)])
    gps = np.full((len(q), 2), np.nan)
    gps[: len(e) : 2] = np.stack([world.lats[lab[::2]], world.lons[lab[::2]]], axis=1)
    insert_photos(conn, q, gps, MODEL)
    for rel in (a, b, _variant(a, "C")):
        import_release(conn, rel)
    retag_release(conn, "A", progress=False)
    retag_release(conn, "B", progress=False, make_active=False)
    old, new = _pairs(conn, "A"), _pairs(conn, "B")
    gained, lost = Counter(lm for _, lm in new - old), Counter(lm for _, lm in old - new)
    assert sum(gained.values()) > 0 and sum(lost.values()) > 0  # the diff has both sides
    env = {"DATABASE_URL": db_url}
    before = run_cli("release", "diff", "A", "B", "--json", "--top", "2", env=env)
    assert before.returncode == 0, before.stderr
    out = json.loads(before.stdout)
    assert (out["old"]["status"], out["new"]["status"]) == ("active", "ready")
    assert out["totals"]["gained"] == sum(gained.values())
    assert out["totals"]["lost"] == sum(lost.values())
    assert (out["totals"]["matches_old"], out["totals"]["matches_new"]) == (len(old), len(new))
    assert len(out["top"]) == min(2, len(set(gained) | set(lost)))
    for row in out["top"]:
        assert (row["gained"], row["lost"]) == (
            gained[row["landmark_id"]],
            lost[row["landmark_id"]],
        )
        assert row["name"].startswith("Landmark")
    ranked = sorted(set(gained) | set(lost), key=lambda lm: -(gained[lm] + lost[lm]))
    assert out["top"][0]["gained"] + out["top"][0]["lost"] == gained[ranked[0]] + lost[ranked[0]]
    assert activate(conn, "B") == "A"
    after = json.loads(run_cli("release", "diff", "A", "B", "--json", env=env).stdout)
    assert (after["old"]["status"], after["new"]["status"]) == ("retired", "active")
    assert after["totals"] == out["totals"]
    text = run_cli("release", "diff", "A", "B", env=env)
    assert text.returncode == 0 and f"+{out['totals']['gained']}" in text.stdout
    refused = run_cli("release", "diff", "B", "C", env=env)
    assert refused.returncode == 2 and "C is imported" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    conn.close()


@pytest.mark.slow
def test_two_model_generations_then_retire_by_command(db_url, tmp_path) -> None:
    """A release for new weights imports with --new-model only, activates beside the old
    model's, and each photo is read through its own model's release (same albums while half
    the photos moved); the old release retires by command only once no photo of its model is
    left."""
    conn = connect(db_url)
    a, world, rng = _release("A")
    e, _ = photos(rng, world, 40)
    q = np.concatenate([e, negatives(rng, world, 60, 6)])
    ids = insert_photos(conn, q, np.full((len(q), 2), np.nan), MODEL)
    import_release(conn, a)
    retag_release(conn, "A", progress=False)
    before = _albums(conn)
    assert sum(before.values()) > 10
    new = _variant(a, "N", model="new-model+def")  # the same space: the same matches
    save_release(new, tmp_path / "n.npz")
    env = {"DATABASE_URL": db_url}
    r = run_cli("release", "import", str(tmp_path / "n.npz"), env=env)
    assert r.returncode == 2 and "new-model+def" in r.stderr
    r = run_cli("release", "import", str(tmp_path / "n.npz"), "--new-model", env=env)
    assert r.returncode == 0, r.stderr
    retag_release(conn, "N", progress=False)  # no photo on the new model yet: active at once
    with conn, conn.cursor() as cur:
        cur.execute("SELECT version, status FROM releases ORDER BY 1")
        assert cur.fetchall() == [("A", "active"), ("N", "active")]
    assert _albums(conn) == before
    r = run_cli("release", "retire", "A", env=env)
    assert r.returncode == 2 and f"{len(q)} photos still carry model" in r.stderr
    # Half the photos re-embedded (same vectors: the new model's space equals the old here).
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE photos SET model_version = 'new-model+def' WHERE id = ANY(%s)",
            (ids[::2],),
        )
    retag_release(conn, "N", progress=False)
    assert _albums(conn) == before  # each photo counted once, through its own model's release
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM landmark_matches WHERE release = 'A'")
        assert cur.fetchone()[0] > 0  # the moved photos' old rows are not read
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE photos SET model_version = 'new-model+def'")
    retag_release(conn, "N", progress=False)
    r = run_cli("release", "retire", "A", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["retired"] is True
    assert _albums(conn) == before
    conn.close()
