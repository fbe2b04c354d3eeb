"""Corrections back into calibration: owners' hidden landmark matches count as false
positives and added landmarks as positives when `sightline calibrate` picks thresholds."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from models.centroids import build_centroids
from models.landmark_eval import NONE, calibrate
from models.landmarks import Thresholds
from models.release import make_release, save_release
from tests.support import run_cli
from tests.synthetic_landmarks import insert_photos, make_world, negatives, photos, references
from workers.releases import import_release
from workers.retag import retag_release

MODEL = "model-a"
FPR = 0.02
pytestmark = pytest.mark.slow


def test_corrections_move_calibrated_thresholds_the_expected_way(db, db_url, tmp_path) -> None:
    """Owners hide look-alikes the calibrated release matched and add landmark photos it
    missed; exported and fed back, hides raise the general threshold (fewer of those match)
    and adds lower it (the added photos now match). JSON and CSV exports agree."""
    rng = np.random.default_rng(1)
    world = make_world(rng, [1, 1, 1, 1], dim=32)
    e, lab = photos(rng, world, [60] * 4)
    cs = build_centroids(e, lab, min_cluster=50)
    refs, rl = references(rng, world)
    base = make_release(
        version="base",
        model_version=MODEL,
        thresholds=Thresholds(),
        landmarks=world.landmark_rows(),
        centroids=cs.centroids,
        centroid_landmarks=cs.labels,
        references=refs,
        reference_landmarks=rl,
    )
    save_release(base, tmp_path / "base.npz")
    # The labelled set the release was calibrated on.
    le, ll = photos(rng, world, 10)
    ne = negatives(rng, world, 200, 20)
    np.save(tmp_path / "E.npy", np.concatenate([le, ne]))
    np.save(tmp_path / "L.npy", np.concatenate([ll, np.full(len(ne), -1)]))
    truth = np.concatenate([ll, np.full(len(ne), NONE)])
    tuned = calibrate(base.index(), np.concatenate([le, ne]), truth, target_fpr=FPR).thresholds
    live = base.with_thresholds(tuned, version="live")

    # The library: look-alike buildings and hard photos of the landmarks, matched by 'live'.
    hard_neg = negatives(rng, world, 0, 200, sigma=0.8)
    hard_pos, hard_lab = photos(rng, world, 30, sigma=0.6)
    nan = np.full((len(hard_neg) + len(hard_pos), 2), np.nan)
    ids = insert_photos(db, np.concatenate([hard_neg, hard_pos]), nan, MODEL)
    import_release(db, live)
    retag_release(db, "live", progress=False)
    neg_ids, pos_ids = ids[: len(hard_neg)], ids[len(hard_neg) :]
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT photo_id, landmark_id FROM landmark_matches WHERE photo_id = ANY(%s)",
            (neg_ids,),
        )
        false_matches = cur.fetchall()
        for pid, lid in false_matches:
            cur.execute("SELECT * FROM hide_from_album('alice', %s, 'landmark', %s)", (pid, lid))
        cur.execute(
            "SELECT DISTINCT photo_id FROM landmark_matches WHERE photo_id = ANY(%s)", (pos_ids,)
        )
        matched = {r[0] for r in cur.fetchall()}
        missed = [(pid, str(lab)) for pid, lab in zip(pos_ids, hard_lab) if pid not in matched]
        for pid, lid in missed:
            cur.execute("SELECT * FROM add_to_album('alice', %s, 'landmark', %s)", (pid, lid))
    assert len(false_matches) > 20 and len(missed) >= 3

    env = {"DATABASE_URL": db_url}
    as_json = run_cli("corrections", "export", "--json", env=env)
    as_csv = run_cli("corrections", "export", "--csv", env=env)
    assert as_json.returncode == as_csv.returncode == 0, as_json.stderr + as_csv.stderr
    rows = [json.loads(ln) for ln in as_json.stdout.splitlines()]
    assert len(rows) == len(false_matches) + len(missed)
    assert {(r["verdict"], r["model_version"], r["release"]) for r in rows} == {
        ("hide", MODEL, "live"),
        ("add", MODEL, "live"),
    }
    assert all(r["score"] is not None for r in rows if r["verdict"] == "hide")
    csv_rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["photo_id"] for r in csv_rows] == [str(r["photo_id"]) for r in rows]
    for verdict in ("hide", "add"):
        (tmp_path / f"{verdict}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows if r["verdict"] == verdict)
        )
    (tmp_path / "all.csv").write_text(as_csv.stdout)

    def recalibrate(corrections: str) -> dict:
        r = run_cli(
            "calibrate",
            "--release", str(tmp_path / "base.npz"),
            "--embeddings", str(tmp_path / "E.npy"),
            "--labels", str(tmp_path / "L.npy"),
            "--target-fpr", str(FPR),
            "--corrections", str(tmp_path / corrections),
            "--out", str(tmp_path / f"{corrections}.npz"),
            "--json",
            env=env,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def matches(th: dict, emb: np.ndarray, labels=None) -> int:
        idx = base.with_thresholds(Thresholds.from_dict(th), version="x").index()
        found = idx.match(emb, None)
        if labels is None:
            return sum(bool(ms) for ms in found)
        return sum(any(m.landmark == t for m in ms) for ms, t in zip(found, labels))

    hid = recalibrate("hide.jsonl")
    assert hid["corrections"]["hidden"] == len({p for p, _ in false_matches})
    assert hid["thresholds"]["general"] > tuned.general
    hidden_emb = hard_neg[[neg_ids.index(p) for p in sorted({p for p, _ in false_matches})]]
    assert matches(hid["thresholds"], hidden_emb) < matches(tuned.to_dict(), hidden_emb)

    added = recalibrate("add.jsonl")
    assert added["corrections"]["added"] == len(missed)
    assert added["thresholds"]["general"] < tuned.general
    pos_index = {pid: i for i, pid in enumerate(pos_ids)}
    added_emb = hard_pos[[pos_index[p] for p, _ in missed]]
    added_lab = [int(lid) for _, lid in missed]
    assert matches(tuned.to_dict(), added_emb, added_lab) == 0
    assert matches(added["thresholds"], added_emb, added_lab) > 0

    # The CSV export says the same as the JSON one.
    both_csv = recalibrate("all.csv")
    (tmp_path / "all.jsonl").write_text(as_json.stdout)
    assert both_csv["thresholds"] == recalibrate("all.jsonl")["thresholds"]
