"""The landmark commands as a user runs them: build, clean, match, calibrate, eval."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from models.release import load_release
from tests.support import run_cli
from tests.synthetic_landmarks import make_world, negatives, photos, references


@pytest.mark.slow
def test_build_match_calibrate_eval_from_files(tmp_path) -> None:
    """centroids build reports multi-centroid landmarks; match, calibrate and eval read its file."""
    rng = np.random.default_rng(21)
    world = make_world(rng, [2, 1, 3, 1])
    e, lab = photos(rng, world, [70, 120, 60, 12])
    junk = negatives(rng, world, 50, 0)
    np.save(tmp_path / "E.npy", np.concatenate([e, junk]))
    np.save(tmp_path / "L.npy", np.concatenate([lab, np.full(50, -1)]))
    refs, rl = references(rng, world)
    np.save(tmp_path / "R.npy", refs)
    np.save(tmp_path / "RL.npy", rl)
    with (tmp_path / "landmarks.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "name", "city", "country", "lat", "lon"])
        w.writeheader()
        w.writerows(world.landmark_rows())
    f = {
        k: str(tmp_path / v)
        for k, v in dict(E="E.npy", L="L.npy", R="R.npy", RL="RL.npy", C="landmarks.csv").items()
    }
    out = run_cli(
        "centroids",
        "build",
        "--embeddings",
        f["E"],
        "--labels",
        f["L"],
        "--landmarks",
        f["C"],
        "--references",
        f["R"],
        "--reference-labels",
        f["RL"],
        "--model-version",
        "m1",
        "--version",
        "v1",
        "--out",
        str(tmp_path / "v1.npz"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    built = json.loads(out.stdout)
    assert (built["landmarks"], built["centroids"], built["multi_centroid_landmarks"]) == (4, 7, 2)
    rel = load_release(tmp_path / "v1.npz")
    assert rel.train_photos.tolist() == [140, 120, 180, 12]

    out = run_cli(
        "clean",
        "--embeddings",
        f["E"],
        "--labels",
        f["L"],
        "--references",
        f["R"],
        "--reference-labels",
        f["RL"],
        "--threshold",
        "0.4",
        "--out",
        str(tmp_path / "keep.npy"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    keep = np.load(tmp_path / "keep.npy")
    assert keep.dtype == bool and keep[: len(lab)][lab == 1].all()  # one view: all near refs
    assert keep[len(lab) :].all()  # not-a-landmark photos are never dropped

    ve, vl = photos(rng, world, 10)
    vn = negatives(rng, world, 800, 200)
    np.save(tmp_path / "V.npy", np.concatenate([ve, vn]))
    np.save(tmp_path / "VL.npy", np.concatenate([vl, np.full(len(vn), -1)]))
    gps = np.full((len(ve) + len(vn), 2), np.nan)
    gps[0] = [world.lats[vl[0]], world.lons[vl[0]]]
    np.save(tmp_path / "G.npy", gps)
    out = run_cli(
        "match",
        "--release",
        str(tmp_path / "v1.npz"),
        "--embeddings",
        str(tmp_path / "V.npy"),
        "--gps",
        str(tmp_path / "G.npy"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == len(gps) and lines[0]["index"] == 0
    assert lines[0]["matches"][0]["landmark_id"] == str(vl[0])

    out = run_cli(
        "calibrate",
        "--release",
        str(tmp_path / "v1.npz"),
        "--embeddings",
        str(tmp_path / "V.npy"),
        "--labels",
        str(tmp_path / "VL.npy"),
        "--target-fpr",
        "0.01",
        "--out",
        str(tmp_path / "v2.npz"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    cal = json.loads(out.stdout)
    assert cal["version"] == "v1+fpr0.01" and cal["metrics"]["false_positive_rate"] <= 0.01
    v2 = load_release(tmp_path / "v2.npz")
    assert v2.parent == "v1" and v2.thresholds.general == cal["thresholds"]["general"]

    out = run_cli(
        "eval",
        "landmarks",
        "--release",
        str(tmp_path / "v2.npz"),
        "--embeddings",
        str(tmp_path / "V.npy"),
        "--labels",
        str(tmp_path / "VL.npy"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)
    assert m["landmark_accuracy"] == cal["metrics"]["landmark_accuracy"]
    # 10 photos per viewpoint; training counts 140, 120, 180 are frequent, 12 is rare.
    assert m["frequent_photos"] == 60 and m["rare_photos"] == 10
    assert 0 < m["gap"] <= 1


@pytest.mark.slow
def test_bad_inputs_get_one_line_errors(tmp_path) -> None:
    """Missing files, pickled arrays, unknown labels and wrong widths: one line, no traceback."""
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    np.save(tmp_path / "E.npy", np.eye(3, dtype=np.float32))
    np.save(tmp_path / "L.npy", np.array([0, 7, -1]))
    (tmp_path / "c.csv").write_text("id,name\n0,Zero\n")
    cases = [
        ("match", "--release", str(tmp_path / "nope.npz"), "--embeddings", str(tmp_path / "E.npy")),
        (
            "centroids",
            "build",
            "--embeddings",
            str(tmp_path / "obj.npy"),
            "--labels",
            str(tmp_path / "L.npy"),
            "--landmarks",
            str(tmp_path / "c.csv"),
            "--model-version",
            "m",
            "--out",
            str(tmp_path / "x.npz"),
        ),
        (
            "centroids",
            "build",
            "--embeddings",
            str(tmp_path / "E.npy"),
            "--labels",
            str(tmp_path / "L.npy"),
            "--landmarks",
            str(tmp_path / "c.csv"),
            "--model-version",
            "m",
            "--out",
            str(tmp_path / "x.npz"),
        ),
    ]
    expect = ["no release file", "is not a .npy array", "labels [7] have no row"]
    for args, text in zip(cases, expect):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.npz").exists()
