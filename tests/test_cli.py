"""The command line as a user meets it: JSON out, one-line errors, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sightline.samples import synthetic_jpeg
from tests.support import run_cli

TINY = {"SIGHTLINE_ALLOW_UNTRAINED": "1", "SIGHTLINE_ARCH": "tiny"}


@pytest.mark.slow
def test_inspect_reports_size_orientation_time_and_gps(tmp_path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(
        synthetic_jpeg(
            gps=(-33.85678, 151.2153),
            orientation=6,
            taken_at="2023:12:31 23:59:00",
            offset="+11:00",
        )
    )
    out = run_cli("inspect", str(photo), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["format"], info["width"], info["height"], info["orientation"]) == (
        "JPEG",
        600,
        800,
        6,
    )
    assert info["taken_at"] == "2023-12-31T23:59:00+11:00"
    assert abs(info["gps"]["lat"] + 33.85678) < 1e-4 and abs(info["gps"]["lon"] - 151.2153) < 1e-4
    assert info["camera"] == "SightlineCam Demo 1"


@pytest.mark.slow
def test_inspect_unreadable_photo_is_json_error_and_status_2(tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    out = run_cli("inspect", str(bad), "--json")
    assert out.returncode == 2
    assert "error" in json.loads(out.stdout)
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_tag_says_untrained_and_tags_each_photo_or_reports_its_error(tmp_path) -> None:
    """`tag --json`: stdout holds exactly one JSON object per photo, in order; the untrained
    warning goes to stderr."""
    good = tmp_path / "good.jpg"
    good.write_bytes(synthetic_jpeg(width=200, height=150))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    out = run_cli("tag", str(good), str(bad), str(tmp_path / "missing.jpg"), "--json", env=TINY)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert "WARNING: untrained network" in out.stderr
    assert [x["photo"] for x in lines] == [str(good), str(bad), str(tmp_path / "missing.jpg")]
    g, b, m = lines
    assert len(g["scenes"]) == 5 and g["trained"] is False
    assert g["scenes"][0]["probability"] >= g["scenes"][-1]["probability"]
    assert isinstance(g["indoor"], bool) and g["albums"]
    assert "not an image" in b["error"] or "corrupt" in b["error"]
    assert "cannot read" in m["error"]
    assert out.returncode == 2 and "Traceback" not in out.stderr


@pytest.mark.slow
def test_tag_without_weights_refuses_to_run() -> None:
    """No weights and no explicit permission: a clear refusal, not an untrained model."""
    out = run_cli("tag", "x.jpg", env={"SIGHTLINE_ALLOW_UNTRAINED": "", "SIGHTLINE_WEIGHTS": ""})
    assert out.returncode == 2
    assert "no weights" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_worker_without_broker_is_a_one_line_error() -> None:
    out = run_cli("worker", env={**TINY, "CELERY_BROKER_URL": ""})
    assert out.returncode == 2 and "CELERY_BROKER_URL is not set" in out.stderr


@pytest.mark.slow
def test_db_upgrade_twice_changes_nothing_the_second_time(empty_db_url: str) -> None:
    env = {"DATABASE_URL": empty_db_url}
    first = run_cli("db", "upgrade", "--json", env=env)
    second = run_cli("db", "upgrade", "--json", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout)["applied"] == json.loads(second.stdout)["current"]
    assert json.loads(second.stdout)["applied"] == []


@pytest.mark.slow
def test_db_upgrade_on_unreachable_database_is_a_one_line_error() -> None:
    out = run_cli("db", "upgrade", env={"DATABASE_URL": "postgresql://x@127.0.0.1:1/none"})
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "cannot connect" in out.stderr


@pytest.mark.slow
def test_bench_worker_prints_its_figures_and_commits_rows(db_url: str) -> None:
    """The worker benchmark runs the real path (tiny network, small photos) and reports
    every figure it promises; rows committed = warm-up batch + 2 batches per round."""
    out = run_cli(
        "bench",
        "worker",
        "--json",
        "--batch-size",
        "2",
        "--batches",
        "1",
        "--photos",
        "1",
        "--width",
        "640",
        "--height",
        "480",
        env={**TINY, "DATABASE_URL": db_url},
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    for key in [
        "end_to_end_images_per_s",
        "model_only_images_per_s",
        "ratio",
        "decode_full_ms",
        "decode_draft_ms",
        "decode_speedup",
        "batch_size",
        "device",
    ]:
        assert key in figures
    assert figures["rows_committed"] == 6 and figures["batch_size"] == 2
    assert figures["trained"] is False and figures["device"] == "cpu"
    # On a CPU the same run compares fp32 and bf16 and relates the rate to a measured peak.
    assert figures["model_only_images_per_s_fp32"] > 0
    assert figures["bf16_speedup"] == pytest.approx(
        figures["model_only_images_per_s_bf16"] / figures["model_only_images_per_s_fp32"],
        rel=0.01,
    )
    assert 0.99 < figures["bf16_embedding_cosine_min"] <= 1.0
    assert 0 < figures["bf16_top5_agreement"] <= 1.0
    assert figures["gflop_per_image"] > 0 and figures["peak_share"] > 0


@pytest.mark.slow
def test_the_command_line_starts_without_the_worker_stack() -> None:
    """Building every command's parser imports no torch, numpy, PIL, boto3 or psycopg2, so a
    handler-only install can run `sightline events parse`."""
    import subprocess
    import sys

    code = (
        "import sys, sightline.cli as c; c.build_parser(); "
        "print([m for m in ('torch', 'numpy', 'PIL', 'boto3', 'psycopg2') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_tag_matches_landmarks_of_a_release_file(tmp_path) -> None:
    """`tag --release` matches like the worker: a photo in the landmark's square whose
    embedding is the centroid matches (with the release version); one far away does not.
    The centroid is the untrained tiny network's own embedding: plumbing, not recognition."""
    from models.landmarks import Thresholds
    from models.release import make_release, save_release
    from workers.inference import SceneLandmarkModel
    from workers.photos import decode

    near = synthetic_jpeg(width=200, height=150, seed=4, gps=(48.8584, 2.2945))
    far = synthetic_jpeg(width=200, height=150, seed=4, gps=(59.9398, 30.3146))
    model = SceneLandmarkModel(weights=None, allow_untrained=True, arch="tiny")
    t = model.transform
    _, emb = model.predict([decode(near, resize=t.resize, crop=t.crop).crop])
    release = make_release(
        version="r1",
        model_version=model.meta.model_version,
        thresholds=Thresholds(geo=0.999, general=2.0, verify=2.0),
        landmarks=[
            {
                "id": "eiffel",
                "name": "Eiffel Tower",
                "city": "Paris",
                "country": "France",
                "lat": 48.8584,
                "lon": 2.2945,
                "photos": 1,
            }
        ],
        centroids=emb,
        centroid_landmarks=np.zeros(1, dtype=np.int64),
    )
    save_release(release, tmp_path / "r1.npz")
    (tmp_path / "near.jpg").write_bytes(near)
    (tmp_path / "far.jpg").write_bytes(far)
    out = run_cli(
        "tag",
        str(tmp_path / "near.jpg"),
        str(tmp_path / "far.jpg"),
        "--json",
        "--release",
        str(tmp_path / "r1.npz"),
        env=TINY,
    )
    assert out.returncode == 0, out.stderr
    near_out, far_out = (json.loads(x) for x in out.stdout.splitlines())
    assert [(m["release"], m["landmark_id"]) for m in near_out["landmarks"]] == [("r1", "eiffel")]
    assert far_out["landmarks"] == []


@pytest.mark.slow
def test_embed_output_feeds_centroids_build(tmp_path) -> None:
    """`embed` writes (N, D) float32 rows equal to the model's own embeddings of the photos
    that decoded, and names.txt; `centroids build` reads them, and the one landmark's centroid
    is their normalised mean. A broken photo is skipped with one stderr line and exit 2."""
    from models.release import load_release
    from workers.inference import SceneLandmarkModel
    from workers.photos import decode

    datas = [synthetic_jpeg(width=160, height=120, seed=s) for s in (1, 2, 3)]
    paths = []
    for n, data in enumerate(datas):
        paths.append(tmp_path / f"p{n}.jpg")
        paths[-1].write_bytes(data)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    order = [str(paths[0]), str(tmp_path / "broken.jpg"), str(paths[1]), str(paths[2])]
    out = run_cli(
        "embed", *order, "--out", str(tmp_path / "E.npy"), "--names", str(tmp_path / "n.txt"),
        "--json", env={**TINY, "SIGHTLINE_BATCH_SIZE": "2"},
    )  # fmt: skip
    assert out.returncode == 2
    summary = json.loads(out.stdout)
    broken = tmp_path / "broken.jpg"
    assert [line for line in out.stderr.splitlines() if "skipped" in line] == [
        f"sightline: error: {broken}: skipped: not an image (format not recognised)"
    ]
    e = np.load(tmp_path / "E.npy")
    assert e.dtype == np.float32 and e.shape == (3, summary["dim"])
    assert (tmp_path / "n.txt").read_text().splitlines() == [str(p) for p in paths]

    model = SceneLandmarkModel(weights=None, allow_untrained=True, arch="tiny")
    t = model.transform
    _, expect = model.predict([decode(d, resize=t.resize, crop=t.crop).crop for d in datas])
    assert summary["model_version"] == model.meta.model_version
    np.testing.assert_allclose(e, expect, atol=1e-5)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)

    np.save(tmp_path / "L.npy", np.zeros(3, dtype=np.int64))
    (tmp_path / "lm.csv").write_text("id,name,city,country,lat,lon\n0,Tower,Paris,France,48,2\n")
    built = run_cli(
        "centroids", "build", "--embeddings", str(tmp_path / "E.npy"),
        "--labels", str(tmp_path / "L.npy"), "--landmarks", str(tmp_path / "lm.csv"),
        "--model-version", summary["model_version"], "--min-cluster", "50",
        "--out", str(tmp_path / "r.npz"), "--json",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    release = load_release(tmp_path / "r.npz")
    assert release.embedding_dim == summary["dim"]
    mean = e.mean(axis=0)
    np.testing.assert_allclose(release.centroids[0], mean / np.linalg.norm(mean), atol=1e-5)
