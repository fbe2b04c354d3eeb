"""`sightline backfill` end to end: a moto S3 bucket, Redis, real `sightline worker` and
`sightline backfill` processes, the embedded Postgres."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from sightline.samples import synthetic_jpeg
from tests.support import ROOT, run_cli, start_worker, stop_worker, wait_for, worker_env
from workers import jobs

pytestmark = pytest.mark.slow


def _bucket(moto_endpoint: str, keys: list[str], size: int = 64) -> tuple[object, str]:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    name = f"bf-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    for i, key in enumerate(keys):
        body = synthetic_jpeg(seed=i, width=size, height=size * 3 // 4)
        s3.put_object(Bucket=name, Key=key, Body=body)
    return s3, name


def _env(db_url: str, redis_url: str, moto_endpoint: str, **extra: str) -> dict[str, str]:
    # A dead worker's unacked messages come back after 3 s (the Redis visibility timeout).
    opts = json.dumps({"visibility_timeout": 3})
    return worker_env(db_url, redis_url, moto_endpoint, SIGHTLINE_BROKER_OPTIONS=opts, **extra)


def _job(db, job_id: int) -> jobs.Job:
    with db, db.cursor() as cur:
        return jobs.get(cur, job_id)


def _scalar(db, sql: str, *args) -> int:
    with db, db.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def _backfill(env: dict[str, str], *args: str) -> dict:
    out = run_cli("backfill", *args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _assert_counts_match(db, job_id: int) -> jobs.Job:
    """The job's counts are what the photos table says its tasks did."""
    job = _job(db, job_id)
    done = _scalar(
        db, "SELECT count(*) FROM photos WHERE job_id = %s AND status = 'tagged'", job_id
    )
    failed = _scalar(
        db, "SELECT count(*) FROM photos WHERE job_id = %s AND status IN ('failed', 'gone')", job_id
    )
    marked = _scalar(db, "SELECT count(*) FROM photos WHERE job_id = %s", job_id)
    assert (job.done, job.failed) == (done, failed)
    assert job.done + job.failed + job.skipped == job.published == marked
    return job


def test_onboarding_500_objects(db, db_url, redis_url, moto_endpoint, tmp_path) -> None:
    """500 objects put before any worker runs: a backfill and one worker tag them all, the
    job's counts match the photos table, and a second backfill publishes nothing."""
    keys = [f"users/u{i % 7}/2024/{i:04d}.jpg" for i in range(500)]
    keys += ["users/u1/notes.txt", "users/u2/.thumbnails/0001.jpg", "users/u3/"]
    s3, bucket = _bucket(moto_endpoint, keys)
    env = _env(db_url, redis_url, moto_endpoint, SIGHTLINE_EXCLUDE="*/.thumbnails/*")
    first = _backfill(env, f"s3://{bucket}", "--page-size", "120")
    assert (first["listed"], first["published"], first["state"]) == (503, 500, "running")
    assert first["params"] == {"source": f"s3://{bucket}", "selection": "missing"}
    worker = start_worker(
        env, "--batch-size", "32", "--batch-wait-ms", "100", log=tmp_path / "worker.log"
    )
    try:
        wait_for(
            lambda: _job(db, first["id"]).state == "done",
            timeout=300,
            what=f"the backfill job to finish ({tmp_path})",
        )
    finally:
        stop_worker(worker)
    job = _assert_counts_match(db, first["id"])
    assert (job.done, job.failed, job.skipped) == (500, 0, 0)
    with db, db.cursor() as cur:
        cur.execute("SELECT owner, key, etag, attempts FROM photos ORDER BY key")
        rows = cur.fetchall()
    assert [r[1] for r in rows] == sorted(keys[:500])
    assert all(owner == key.split("/")[1] and attempts == 1 for owner, key, _, attempts in rows)
    stored = {key: etag for _, key, etag, _ in rows}
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="users/u0/")["Contents"]
    assert all(stored[o["Key"]] == o["ETag"].strip('"') for o in listed)
    second = _backfill(env, f"s3://{bucket}")
    assert (second["listed"], second["published"], second["state"]) == (503, 0, "done")
    assert second["id"] != first["id"]


def _start_backfill(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sightline", "backfill", *args],
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _live_job(db) -> int | None:
    with db, db.cursor() as cur:
        found = jobs.list_jobs(cur, live_only=True)
    return found[0].id if found else None


def test_kill_9_backfill_and_worker_then_resume(
    db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """kill -9 of the backfill and of the worker mid-run, both started again: every photo is
    tagged exactly once (one row, one write) and the job's counts match the photos table."""
    keys = [f"users/k{i % 3}/{i:04d}.jpg" for i in range(160)]
    _, bucket = _bucket(moto_endpoint, keys)
    env = _env(db_url, redis_url, moto_endpoint)
    worker = start_worker(
        env, "--batch-size", "8", "--batch-wait-ms", "100", log=tmp_path / "worker1.log"
    )
    bf = _start_backfill(
        env, tmp_path / "backfill1.log", f"s3://{bucket}", "--page-size", "20", "--rate", "20"
    )
    try:
        job_id = wait_for(lambda: _live_job(db), timeout=60, what="the job row")
        wait_for(
            lambda: _job(db, job_id).published >= 40,
            timeout=120,
            what=f"two checkpointed pages ({tmp_path})",
        )
        bf.send_signal(signal.SIGKILL)
        bf.wait(10)
        killed_at = _job(db, job_id)
        assert killed_at.state == "running" and killed_at.published < len(keys)
        assert killed_at.checkpoint["complete"] is False
        wait_for(
            lambda: _scalar(db, "SELECT count(*) FROM photos") >= 20,
            timeout=180,
            what=f"the worker to tag some photos ({tmp_path})",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert _scalar(db, "SELECT count(*) FROM photos") < len(keys)
        worker = start_worker(
            env, "--batch-size", "8", "--batch-wait-ms", "100", log=tmp_path / "worker2.log"
        )
        resumed = run_cli("backfill", f"s3://{bucket}", "--json", "--wait", env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert f"resuming job {job_id}" in resumed.stderr
        job = json.loads(resumed.stdout)
        assert (job["id"], job["state"], job["listed"]) == (job_id, "done", len(keys))
    finally:
        if bf.poll() is None:
            bf.kill()
        stop_worker(worker)
    job = _assert_counts_match(db, job_id)
    assert job.published == len(keys) and job.done == len(keys)
    with db, db.cursor() as cur:
        cur.execute("SELECT key, status, attempts FROM photos ORDER BY key")
        assert cur.fetchall() == [(k, "tagged", 1) for k in sorted(keys)]


def _run_job(
    db,
    env: dict[str, str],
    tmp_path: Path,
    name: str,
    *args: str,
    progress: bool = False,
    wait: bool = True,
) -> jobs.Job:
    """One backfill with one worker until its job is final (``wait``: with --wait; without,
    for a job that ends when publishing does); the job as it ends. With ``progress``, the
    bar on stderr must end at the job's own counts."""
    worker = start_worker(
        env, "--batch-size", "8", "--batch-wait-ms", "100", log=tmp_path / f"{name}.log"
    )
    flags = ("--progress",) * progress + ("--wait",) * wait
    try:
        out = run_cli("backfill", *args, *flags, "--json", env=env)
        assert out.returncode == 0, out.stderr
    finally:
        stop_worker(worker)
    job = _assert_counts_match(db, json.loads(out.stdout)["id"])
    if progress:
        # tqdm redraws with carriage returns; the last drawing is the final state.
        last = out.stderr.replace("\r", "\n").strip().splitlines()[-1]
        n = job.published
        if n:
            assert last.startswith(f"job {job.id}: 100%") and f" {n}/{n} " in last, last
        assert f"listed={job.listed}, published={n}, failed={job.failed}" in last, last
        assert last.startswith(f"job {job.id}: ") and "photo/s" in last, last
        assert last.endswith(", eta=-]"), last  # the job is done: no ETA
    return job


def _photos(db) -> dict[str, tuple]:
    with db, db.cursor() as cur:
        cur.execute("SELECT key, status, model_version, attempts, error FROM photos")
        return {k: rest for k, *rest in cur.fetchall()}


def test_stale_model_reruns_exactly_the_old_models_photos(
    db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """After switching weights, --stale-model re-tags the photos of the old model and none of
    the new one's; a second --stale-model publishes nothing."""
    from models.checkpoint import save_checkpoint, untrained
    from models.scenes import load_categories
    from models.transforms import default_transform

    old_keys = [f"users/s/old{i}.jpg" for i in range(10)]
    s3, bucket = _bucket(moto_endpoint, old_keys)
    env = _env(db_url, redis_url, moto_endpoint)
    _run_job(db, env, tmp_path, "old", f"s3://{bucket}", progress=True)
    net, meta = untrained(
        arch="tiny", categories=load_categories(), transform=default_transform("tiny"), seed=1
    )
    weights = tmp_path / "new.safetensors"
    save_checkpoint(net, meta, weights)
    new_env = {**env, "SIGHTLINE_WEIGHTS": str(weights)}
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"users/s/new{i}.jpg", Body=synthetic_jpeg(seed=50 + i))
    _run_job(db, new_env, tmp_path, "new", f"s3://{bucket}")
    before = _photos(db)
    old_version = before[old_keys[0]][1]
    new_version = before["users/s/new0.jpg"][1]
    assert old_version != new_version
    assert sorted(k for k, p in before.items() if p[1] == old_version) == sorted(old_keys)
    job = _run_job(db, new_env, tmp_path, "stale", f"s3://{bucket}", "--stale-model")
    assert (job.params["model_version"], job.published, job.done) == (new_version, 10, 10)
    after = _photos(db)
    assert {k: tuple(p[1:3]) for k, p in after.items()} == {
        k: (new_version, 2 if k in old_keys else 1) for k in before
    }
    again = _run_job(
        db, new_env, tmp_path, "again", f"s3://{bucket}", "--stale-model",
        progress=True, wait=False,
    )  # fmt: skip
    assert (again.published, again.state) == (0, "done")


class _Unavailable(BaseHTTPRequestHandler):
    """An object store in an outage: it answers, with 503 to every request (a worker's
    startup check passes on any answer; every fetch is then a transient fault)."""

    def _answer(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def s3_outage():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_failed_reruns_parked_transient_failures(
    db, db_url, redis_url, moto_endpoint, s3_outage, tmp_path
) -> None:
    """Photos parked after an S3 outage are re-run by --failed --failed-kind transient; photos
    that cannot be decoded are re-run only by --failed-kind decode (and fail again)."""
    keys = [f"users/f/{i}.jpg" for i in range(6)]
    s3, bucket = _bucket(moto_endpoint, keys)
    broken = ["users/f/broken0.jpg", "users/f/broken1.jpg"]
    for key in broken:
        s3.put_object(Bucket=bucket, Key=key, Body=b"not a jpeg at all")
    env = _env(db_url, redis_url, moto_endpoint)
    # S3 answering 503 and no retries: every photo is parked as a transient failure. (An
    # endpoint that does not answer at all stops the worker at its startup check.)
    outage = {
        **env,
        "SIGHTLINE_S3_ENDPOINT_URL": s3_outage,
        "SIGHTLINE_MAX_RETRIES": "0",
        "SIGHTLINE_S3_TIMEOUT_S": "1",
    }
    worker = start_worker(outage, "--batch-size", "8", log=tmp_path / "outage.log")
    try:
        out = run_cli("backfill", f"s3://{bucket}", "--json", "--wait", env=env)
        assert out.returncode == 0, out.stderr
    finally:
        stop_worker(worker)
    parked = _assert_counts_match(db, json.loads(out.stdout)["id"])
    assert (parked.published, parked.failed) == (8, 8)
    assert all(
        p[0] == "failed" and p[3].startswith("gave up after retries:") for p in _photos(db).values()
    )
    job = _run_job(
        db, env, tmp_path, "transient", f"s3://{bucket}", "--failed", "--failed-kind", "transient"
    )
    assert (job.published, job.done, job.failed) == (8, 6, 2)
    photos = _photos(db)
    assert {k: p[0] for k, p in photos.items()} == {
        **dict.fromkeys(keys, "tagged"),
        **dict.fromkeys(broken, "failed"),
    }
    assert all("gave up" not in photos[k][3] for k in broken)
    again = _run_job(
        db, env, tmp_path, "again", f"s3://{bucket}", "--failed", "--failed-kind", "transient"
    )
    assert (again.published, again.state) == (0, "done")
    decode = _run_job(
        db, env, tmp_path, "decode", f"s3://{bucket}", "--failed", "--failed-kind", "decode"
    )
    assert (decode.published, decode.failed) == (2, 2)
