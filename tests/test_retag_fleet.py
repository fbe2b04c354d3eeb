"""Fleet re-tag: chunks give the in-process matches, a killed chunk worker resumes to the
same result, and the release activates exactly once when workers race for the last chunk."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from models.scenes import SceneMap
from tests.support import ROOT, run_cli, start_worker, stop_worker, wait_for, worker_env
from tests.test_retag import _matches, _setup
from workers import jobs
from workers.db import connect
from workers.retag import retag_release, retag_scenes
from workers.retag_fleet import close_if_complete, plan_remap, plan_retag, run_chunk


def _job(conn, job_id: int) -> jobs.Job:
    with conn, conn.cursor() as cur:
        return jobs.get(cur, job_id)


def _status(conn, version: str) -> tuple[str, object]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT status, activated_at FROM releases WHERE version = %s", (version,))
        return cur.fetchone()


def test_chunks_give_the_local_matches_and_two_racing_workers_activate_once(db_url) -> None:
    """Three rounds: every chunk but the last two runs, then two workers (own connections)
    each write one of the last two chunks and its duplicate delivery at the same moment.
    Exactly one call closes the job and activates the release; counts are not doubled; the
    matches equal an in-process re-tag's."""
    conn = connect(db_url)
    _setup(conn, 300, versions=("A", "B", "C", "L"))
    retag_release(conn, "L", progress=False, make_active=False)
    want = _matches(conn, "L")
    assert len(want) > 20
    workers = [connect(db_url), connect(db_url)]
    for version in ("A", "B", "C"):
        plan = plan_retag(conn, version, chunk_size=40)
        assert plan.chunks >= 5 and not plan.resumed
        for chunk in plan.pending[:-2]:
            assert not run_chunk(conn, plan.job_id, chunk).closed
        last_two = plan.pending[-2:]
        barrier = threading.Barrier(2)
        closed: list[bool] = []

        def work(w: int, last_two=last_two, barrier=barrier, closed=closed, job=plan.job_id):
            barrier.wait()
            for chunk in (last_two[w], last_two[1 - w]):  # its own, then the other's again
                closed.append(run_chunk(workers[w], job, chunk, worker=f"w{w}").closed)
            closed.append(close_if_complete(workers[w], job, worker=f"w{w}"))

        threads = [threading.Thread(target=work, args=(w,)) for w in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert closed.count(True) == 1, closed
        job = _job(conn, plan.job_id)
        assert job.state == "done" and job.checkpoint["closed_by"] in ("w0", "w1")
        assert job.done == job.total == plan.photos  # the duplicate chunks counted nothing
        assert _status(conn, version)[0] == "active"
        assert _matches(conn, version) == [(p, lm, s) for p, lm, s in want]
        assert not close_if_complete(conn, plan.job_id)  # closing again is a no-op
    with conn, conn.cursor() as cur:
        cur.execute("SELECT version, status FROM releases ORDER BY 1")
        assert cur.fetchall() == [("A", "retired"), ("B", "retired"), ("C", "active"),
                                  ("L", "ready")]  # fmt: skip
    for w in workers:
        w.close()
    conn.close()


def test_scene_refile_in_chunks_equals_the_local_refile(db_url, tmp_path) -> None:
    """A --scene-map job run chunk by chunk files every photo as the in-process re-file."""
    conn = connect(db_url)
    sm = SceneMap.load()
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(len(sm.categories), 0.05), 50).astype(np.float32)
    with conn, conn.cursor() as cur:
        for i, p in enumerate(probs):
            cur.execute(
                "INSERT INTO photos (owner, bucket, key, status, scene_probs) "
                "VALUES ('alice', 'b', %s, 'tagged', %s)",
                (f"k{i}", [float(x) for x in p]),
            )
    text = (ROOT / "models" / "data" / "scene_map.csv").read_text()
    head, *rows = text.splitlines()
    renamed = [r if r.endswith((",", ",-")) else r.replace(",", ",new-", 1) for r in rows]
    (tmp_path / "map.csv").write_text("\n".join([head, *renamed]) + "\n")
    new_map = SceneMap.load(tmp_path / "map.csv")

    def albums() -> list[tuple]:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT photo_id, rank, album, score FROM photo_albums ORDER BY 1, 2")
            return cur.fetchall()

    retag_scenes(conn, new_map, progress=False)
    want = albums()
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM photo_albums")
    plan = plan_remap(conn, new_map, chunk_size=7)
    assert plan_remap(conn, new_map, chunk_size=7).resumed  # the same map: the same job
    outcomes = [run_chunk(conn, plan.job_id, c) for c in plan.pending]
    assert [o.closed for o in outcomes].count(True) == 1
    assert albums() == want and all(a.startswith("new-") for _, _, a, _ in want)
    assert _job(conn, plan.job_id).state == "done"
    conn.close()


@pytest.mark.slow
def test_chunk_worker_killed_then_resumed(db_url, redis_url, tmp_path) -> None:
    """A maintenance worker killed with SIGKILL mid-job leaves chunks pending and the albums
    on no partial release; `sightline retag` again republishes the pending chunks, a new
    worker finishes, and the matches equal an uninterrupted re-tag's, each photo counted
    once."""
    conn = connect(db_url)
    _setup(conn, 30_000, versions=("A", "B"))
    env = worker_env(db_url, redis_url, "http://127.0.0.1:9")
    r = run_cli("retag", "--release", "A", "--chunk-size", "1000", "--json", env=env)
    assert r.returncode == 0, r.stderr
    job_id = int(__import__("json").loads(r.stdout)["release"]["job"])
    worker = start_worker(env, "-Q", "maintenance", "--concurrency", "1", log=tmp_path / "w1.log")

    def chunks_done() -> int:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM retag_chunks WHERE job_id = %s AND state = 'done'",
                (job_id,),
            )
            return cur.fetchone()[0]

    try:
        wait_for(lambda: chunks_done() >= 2, timeout=180, interval=0.05, what="two chunks")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        stop_worker(worker)
    at_kill = chunks_done()
    job = _job(conn, job_id)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM retag_chunks WHERE job_id = %s", (job_id,))
        n_chunks = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM landmark_albums('alice')")
        albums_during = cur.fetchone()[0]
    assert 0 < at_kill < n_chunks and job.state == "running"  # really killed mid-job
    assert _status(conn, "A")[0] == "retagging" and albums_during == 0
    r = run_cli("retag", "--release", "A", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert '"resumed": true' in r.stdout and f'"job": {job_id}' in r.stdout
    worker = start_worker(env, "-Q", "maintenance", "--concurrency", "2", log=tmp_path / "w2.log")
    try:
        wait_for(lambda: _job(conn, job_id).state == "done", timeout=300, what="job done")
    finally:
        stop_worker(worker)
    job = _job(conn, job_id)
    assert job.done == job.total and chunks_done() == n_chunks
    retag_release(conn, "B", batch_size=5000, progress=False, make_active=False)
    assert _matches(conn, "A") == _matches(conn, "B") and len(_matches(conn, "A")) > 20
    assert _status(conn, "A")[0] == "active"
    conn.close()


@pytest.mark.slow
def test_pause_and_cancel_reach_the_chunks(db_url) -> None:
    """A paused job's chunks wait (nothing written) and run after resume; a cancelled job's
    chunks are skipped and never activate the release; a fleet retag with no broker is
    refused in one line that names --local."""
    conn = connect(db_url)
    _setup(conn, 100, versions=("A",))
    before = _status(conn, "A")[0]
    plan = plan_retag(conn, "A", chunk_size=30)
    assert _status(conn, "A")[0] == "retagging" != before
    first, *rest = plan.pending
    with conn, conn.cursor() as cur:
        jobs.move(cur, plan.job_id, "paused")
    assert run_chunk(conn, plan.job_id, first).outcome == "paused"
    assert _matches(conn, "A") == [] and _job(conn, plan.job_id).done == 0
    env = {"DATABASE_URL": db_url, "CELERY_BROKER_URL": "redis://127.0.0.1:9/0"}
    r = run_cli("retag", "--release", "A", env=env)
    assert r.returncode == 2 and "paused" in r.stderr
    with conn, conn.cursor() as cur:
        jobs.move(cur, plan.job_id, "running")
    assert run_chunk(conn, plan.job_id, first).outcome == "done"
    with conn, conn.cursor() as cur:
        jobs.move(cur, plan.job_id, "cancelled")
    assert {run_chunk(conn, plan.job_id, c).outcome for c in rest} == {"skipped"}
    # never activated by a cancelled job, and given back the status it had before
    assert _status(conn, "A")[0] == before
    r = run_cli("retag", "--release", "A", env={"DATABASE_URL": db_url, "CELERY_BROKER_URL": ""})
    assert r.returncode == 2 and "--local" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    conn.close()


def test_fleet_and_local_json_share_one_schema(db_url, redis_url, monkeypatch, capsys) -> None:
    """`retag --json` prints the parts "release" and "scene_map" with the same keys on the
    fleet and with --local; the fleet's job ends done with the local run's matches, and
    --max-albums reaches the fleet's job."""
    import json

    from sightline.cli import build_parser
    from sightline.commands.retag import RELEASE_KEYS, SCENE_MAP_KEYS

    conn = connect(db_url)
    _setup(conn, 200, versions=("A", "B"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CELERY_BROKER_URL", redis_url)
    scene_map = ROOT / "models" / "data" / "scene_map.csv"

    def retag(*argv: str) -> dict:
        args = build_parser().parse_args(["retag", *argv, "--json", "--no-progress"])
        assert args.func(args) == 0
        return json.loads(capsys.readouterr().out)

    local = retag("--local", "--release", "B", "--scene-map", str(scene_map), "--max-albums", "2")
    fleet = retag("--release", "A", "--scene-map", str(scene_map), "--max-albums", "2",
                  "--chunk-size", "70")  # fmt: skip
    for out in (local, fleet):
        assert list(out) == ["release", "scene_map"]
        assert tuple(out["release"]) == RELEASE_KEYS
        assert tuple(out["scene_map"]) == SCENE_MAP_KEYS
    assert (local["release"]["mode"], fleet["release"]["mode"]) == ("local", "fleet")
    assert local["release"]["state"] == "done" and local["release"]["job"] is None
    assert fleet["release"]["state"] == "running" and fleet["release"]["status"] == "retagging"
    assert fleet["release"]["photos"] == local["release"]["photos"]
    assert fleet["release"]["chunks"] == fleet["release"]["pending"] >= 3
    assert fleet["scene_map"]["max_albums"] == local["scene_map"]["max_albums"] == 2
    with conn, conn.cursor() as cur:
        cur.execute("SELECT params->>'max_albums' FROM jobs WHERE id = %s",
                    (fleet["scene_map"]["job"],))  # fmt: skip
        assert cur.fetchone()[0] == "2"
    job, n = fleet["release"]["job"], fleet["release"]["chunks"]
    args = build_parser().parse_args(["retag", "--release", "A", "--no-progress"])
    assert args.func(args) == 0  # the text names the part as --local's does
    assert capsys.readouterr().out.splitlines() == [
        f"release A: job {job} resumed: {n} chunks, {n} tasks published for "
        f"{fleet['release']['photos']} photos; see: sightline jobs show {job}"
    ]
    for chunk in range(n - 1):  # the published chunks, run here
        run_chunk(conn, job, chunk)
    # `retag` again resumes the live job; --wait follows it while the last chunk is written.
    other = connect(db_url)
    last = threading.Timer(1.0, run_chunk, args=(other, job, n - 1))
    last.start()
    done = retag("--release", "A", "--wait")["release"]
    last.join()
    other.close()
    # one chunk was left to publish; once the job is done, none is pending
    assert done["job"] == job and done["resumed"] and done["published"] == 1
    assert done["pending"] == 0
    assert (done["state"], done["status"], done["done"]) == ("done", "active", done["photos"])
    assert done["matches"] == local["release"]["matches"] == len(_matches(conn, "A")) > 0
    assert done["error"] is None and done["seconds"] > 0
    conn.close()


def test_a_chunk_that_raises_fails_the_job_instead_of_leaving_it_running(db_url) -> None:
    """A chunk that cannot run for a reason other than the database (here a job whose
    params lost the map) fails its job in one line: before, the task ended with the chunk
    pending and the job 'running' for ever, so `retag --wait` and the bench never ended."""
    conn = connect(db_url)
    plan = plan_remap(conn, SceneMap.load(), chunk_size=10)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE jobs SET params = params - 'albums_by_class' WHERE id = %s",
                    (plan.job_id,))  # fmt: skip
    outcome = run_chunk(conn, plan.job_id, plan.pending[0])
    job = _job(conn, plan.job_id)
    assert outcome.outcome == "failed" and not outcome.closed
    assert job.state == "failed"
    assert job.error == f"chunk {plan.pending[0]}: KeyError: 'albums_by_class'"
    assert "\n" not in job.error
    # Redelivered, the chunk finds the job final and does nothing.
    assert run_chunk(conn, plan.job_id, plan.pending[0]).outcome == "skipped"
    conn.close()


@pytest.mark.slow
def test_unreachable_broker_is_one_line_and_the_job_resumes(db_url) -> None:
    """No broker: one line naming it, exit 2, and the job kept; run again with a broker it
    resumes (the same job) instead of planning a second one."""
    conn = connect(db_url)
    _setup(conn, 40, versions=("A",))
    env = {"DATABASE_URL": db_url, "CELERY_BROKER_URL": "redis://127.0.0.1:9/0"}
    r = run_cli("retag", "--release", "A", "--chunk-size", "20", env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("sightline: error: cannot publish the re-tag's chunks to redis://")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id, state FROM jobs WHERE kind = 'retag'")
        ((job_id, state),) = cur.fetchall()
    assert state == "running" and f"job {job_id} is kept" in r.stderr
    plan = plan_retag(conn, "A", chunk_size=20)
    assert plan.resumed and plan.job_id == job_id
    conn.close()
