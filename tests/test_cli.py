"""The command line as a user meets it: JSON out, one-line errors, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sightline.samples import synthetic_jpeg
from tests.conftest import run_cli

TINY = {"SIGHTLINE_ALLOW_UNTRAINED": "1", "SIGHTLINE_ARCH": "tiny"}


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


def test_inspect_unreadable_photo_is_json_error_and_status_2(tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    out = run_cli("inspect", str(bad), "--json")
    assert out.returncode == 2
    assert "error" in json.loads(out.stdout)
    assert "Traceback" not in out.stderr


def test_tag_says_untrained_and_tags_each_photo_or_reports_its_error(tmp_path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(synthetic_jpeg(width=200, height=150))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    out = run_cli("tag", str(good), str(bad), str(tmp_path / "missing.jpg"), "--json", env=TINY)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert "untrained" in lines[0]["warning"]
    g, b, m = lines[1:]
    assert len(g["scenes"]) == 5 and g["trained"] is False
    assert g["scenes"][0]["probability"] >= g["scenes"][-1]["probability"]
    assert isinstance(g["indoor"], bool) and g["albums"]
    assert "not an image" in b["error"] or "corrupt" in b["error"]
    assert "cannot read" in m["error"]
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_tag_without_weights_refuses_to_run() -> None:
    """No weights and no explicit permission: a clear refusal, not an untrained model."""
    out = run_cli("tag", "x.jpg", env={"SIGHTLINE_ALLOW_UNTRAINED": "", "SIGHTLINE_WEIGHTS": ""})
    assert out.returncode == 2
    assert "no weights" in out.stderr and "Traceback" not in out.stderr


def test_worker_without_broker_is_a_one_line_error() -> None:
    out = run_cli("worker", env={**TINY, "CELERY_BROKER_URL": ""})
    assert out.returncode == 2 and "CELERY_BROKER_URL is not set" in out.stderr


def test_db_upgrade_twice_changes_nothing_the_second_time(empty_db_url: str) -> None:
    env = {"DATABASE_URL": empty_db_url}
    first = run_cli("db", "upgrade", "--json", env=env)
    second = run_cli("db", "upgrade", "--json", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout)["applied"] == json.loads(second.stdout)["current"]
    assert json.loads(second.stdout)["applied"] == []


def test_db_upgrade_on_unreachable_database_is_a_one_line_error() -> None:
    out = run_cli("db", "upgrade", env={"DATABASE_URL": "postgresql://x@127.0.0.1:1/none"})
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "cannot connect" in out.stderr


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
    near_out, far_out = (json.loads(x) for x in out.stdout.splitlines()[1:])
    assert [(m["release"], m["landmark_id"]) for m in near_out["landmarks"]] == [("r1", "eiffel")]
    assert far_out["landmarks"] == []
