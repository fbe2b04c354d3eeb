"""The worker's side of library jobs, in process: the no-op check, counting once per photo,
paused and cancelled jobs, jobs in the metrics and in `sightline status`; SIGHTLINE_EXCLUDE."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from handlers.core import plan
from handlers.rules import Exclusions, OwnerRule
from sightline.samples import synthetic_jpeg
from tests.support import object_task, run_cli
from workers import jobs
from workers.metrics import WorkerMetrics
from workers.runtime import WorkerRuntime
from workers.settings import Settings


@pytest.fixture
def bucket(moto_endpoint: str) -> tuple:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    name = f"j-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _runtime(db_url: str, endpoint: str, metrics: WorkerMetrics | None = None) -> WorkerRuntime:
    settings = Settings(allow_untrained=True, arch="tiny", s3_endpoint_url=endpoint)
    return WorkerRuntime(settings, db_url, metrics=metrics)


def _put(s3, bucket: str, key: str, seed: int = 0) -> str:
    etag = s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=seed))["ETag"]
    return etag.strip('"')


def _task(bucket: str, key: str, etag: str | None, job_id: int | None, **extra) -> dict:
    task = object_task(bucket, key, seq=None, event_time="2024-05-01T10:00:00+00:00")
    task["etag"] = etag
    if job_id is not None:
        task["job_id"] = job_id
    return {**task, **extra}


def _new_job(db) -> int:
    with db, db.cursor() as cur:
        return jobs.create(cur, "backfill", {"test": True})


def _job(db, job_id: int) -> jobs.Job:
    with db, db.cursor() as cur:
        return jobs.get(cur, job_id)


def test_tagged_unchanged_current_photo_is_a_noop_without_fetch(
    bucket, db, db_url, moto_endpoint
) -> None:
    """A job task for a photo already tagged with the same ETag by this model is skipped
    without touching S3 (the object is deleted first: a fetch would say 'gone'); ``force``,
    another ETag, and an upload's task (no job) all fetch."""
    s3, name = bucket
    etag = _put(s3, name, "users/a/1.jpg")
    rt = _runtime(db_url, moto_endpoint)
    first = _new_job(db)
    assert rt.tag_batch([_task(name, "users/a/1.jpg", etag, first)]) == ["tagged"]
    s3.delete_object(Bucket=name, Key="users/a/1.jpg")
    second = _new_job(db)
    assert rt.tag_batch([_task(name, "users/a/1.jpg", etag, second)]) == ["skipped"]
    assert (_job(db, second).skipped, _job(db, second).done) == (1, 0)
    with db, db.cursor() as cur:
        cur.execute("SELECT status, attempts, job_id FROM photos")
        assert cur.fetchall() == [("tagged", 1, second)]
    assert rt.tag_batch([_task(name, "users/a/1.jpg", "0ther", _new_job(db))]) == ["gone"]
    forced = _new_job(db)
    assert rt.tag_batch([_task(name, "users/a/1.jpg", etag, forced, force=True)]) == ["gone"]
    assert rt.tag_batch([_task(name, "users/a/1.jpg", etag, None)]) == ["gone"]


@pytest.mark.parametrize(
    ("column", "stored"),
    [
        (None, None),  # the photo as this worker tagged it: a no-op
        ("scene_trained", True),  # tagged by another scene head
        ("embedding_trained", True),  # tagged by another landmark embedding head
        ("scene_trained", None),  # tagged before per-head provenance (migration 0010)
        ("embedding_trained", None),
    ],
)
def test_noop_needs_the_same_heads(bucket, db, db_url, moto_endpoint, column, stored) -> None:
    """A job task is a no-op only for a photo tagged by this model version *and* the same
    scene and embedding heads (per-head provenance); any other head, or none recorded,
    re-tags it (a fetch: the object is there)."""
    s3, name = bucket
    etag = _put(s3, name, "users/h/1.jpg")
    rt = _runtime(db_url, moto_endpoint)  # tiny, untrained: both heads untrained
    assert rt.tag_batch([_task(name, "users/h/1.jpg", etag, _new_job(db))]) == ["tagged"]
    with db, db.cursor() as cur:
        cur.execute("SELECT scene_trained, embedding_trained FROM photos")
        assert cur.fetchall() == [(False, False)]
        if column:
            cur.execute(f"UPDATE photos SET {column} = %s", (stored,))
    job_id = _new_job(db)
    expected = "skipped" if column is None else "tagged"
    assert rt.tag_batch([_task(name, "users/h/1.jpg", etag, job_id)]) == [expected]
    job = _job(db, job_id)
    assert (job.done, job.skipped) == ((0, 1) if column is None else (1, 0))
    with db, db.cursor() as cur:
        cur.execute("SELECT scene_trained, embedding_trained FROM photos")
        assert cur.fetchall() == [(False, False)]  # a re-tag records this worker's heads


def test_each_photo_counts_once_per_job(bucket, db, db_url, moto_endpoint) -> None:
    """Copies of a job task, in one batch or in later batches, write and count once."""
    s3, name = bucket
    etags = {k: _put(s3, name, k, i) for i, k in enumerate(["users/b/1.jpg", "users/b/2.jpg"])}
    rt = _runtime(db_url, moto_endpoint)
    job_id = _new_job(db)
    tasks = [_task(name, k, e, job_id) for k, e in etags.items()]
    assert rt.tag_batch([*tasks, tasks[0]]) == ["tagged", "tagged", "skipped"]
    assert rt.tag_batch(tasks) == ["skipped", "skipped"]
    job = _job(db, job_id)
    assert (job.done, job.failed, job.skipped) == (2, 0, 0)
    with db, db.cursor() as cur:
        cur.execute("SELECT key, attempts, job_id FROM photos ORDER BY key")
        assert cur.fetchall() == [(k, 1, job_id) for k in sorted(etags)]


def test_paused_job_defers_and_cancelled_job_skips(bucket, db, db_url, moto_endpoint) -> None:
    """A paused job's tasks are deferred (nothing written); a cancelled job's are skipped
    and counted; a job finishes when its listing is complete and every task has an outcome."""
    s3, name = bucket
    etag = _put(s3, name, "users/c/1.jpg")
    rt = _runtime(db_url, moto_endpoint)
    job_id = _new_job(db)
    with db, db.cursor() as cur:
        jobs.add(cur, job_id, listed=1, published=1)
        jobs.save_checkpoint(cur, job_id, {"start_after": "users/c/1.jpg", "complete": True})
        jobs.move(cur, job_id, "paused")
    task = _task(name, "users/c/1.jpg", etag, job_id)
    assert rt.tag_batch([task]) == ["deferred"]
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*) FROM photos")
        assert cur.fetchone()[0] == 0
        jobs.move(cur, job_id, "running")
    assert rt.tag_batch([task]) == ["tagged"]
    assert (_job(db, job_id).state, _job(db, job_id).done) == ("done", 1)
    cancelled = _new_job(db)
    with db, db.cursor() as cur:
        jobs.move(cur, cancelled, "cancelled")
    assert rt.tag_batch([_task(name, "users/c/2.jpg", "x", cancelled)]) == ["skipped"]
    assert _job(db, cancelled).skipped == 1


@pytest.mark.slow
def test_live_jobs_in_metrics_and_status(db, db_url, moto_endpoint, redis_url) -> None:
    """A running job shows in the worker's Prometheus metrics and in `sightline status`;
    a finished one in neither."""
    with db, db.cursor() as cur:
        live = jobs.create(cur, "backfill", {"source": "s3://x"})
        jobs.add(cur, live, listed=10, published=8, done=3, failed=1)
        over = jobs.create(cur, "backfill", {})
        jobs.move(cur, over, "done")
    metrics = WorkerMetrics()
    _runtime(db_url, moto_endpoint, metrics)

    def value(count: str) -> float | None:
        labels = {"job": str(live), "kind": "backfill", "state": "running", "count": count}
        return metrics.registry.get_sample_value("sightline_job_tasks", labels)

    assert (value("published"), value("done"), value("failed")) == (8, 3, 1)
    assert (
        metrics.registry.get_sample_value(
            "sightline_job_tasks",
            {"job": str(over), "kind": "backfill", "state": "done", "count": "done"},
        )
        is None
    )
    env = {"DATABASE_URL": db_url, "CELERY_BROKER_URL": redis_url}
    out = run_cli("status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)["jobs"]
    assert (row["id"], row["published"], row["done"]) == (live, 8, 3)
    text = run_cli("status", env=env).stdout
    assert f"job {live:<6} backfill running: 3 done, 1 failed, 0 skipped of 8 published" in text


@pytest.mark.parametrize(
    ("key", "excluded_by"),
    [
        ("users/a/.thumbnails/1.jpg", "*/.thumbnails/*"),
        ("users/a/x/@eaDir/SYNOPHOTO_THUMB.jpg", "*/@eaDir/*"),
        ("@eaDir/top.jpg", "*/@eaDir/*"),
        ("tmp/upload.jpg", "tmp/"),
        ("users/a/holiday.jpg", None),
        ("users/a/thumbnails.jpg", None),
    ],
)
def test_exclusions_match_globs_and_prefixes(key: str, excluded_by: str | None) -> None:
    """SIGHTLINE_EXCLUDE: globs match anywhere in the key (and at the top), others are
    prefixes; an excluded upload is ignored with the pattern as its reason."""
    rule = Exclusions.parse(" */.thumbnails/*, */@eaDir/*,tmp/ ")
    assert rule.match(key) == excluded_by
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "eventTime": "2024-01-01T00:00:00Z",
                "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 10}},
            }
        ]
    }
    [action] = plan(event, OwnerRule(default_owner="d"), exclude=rule)
    if excluded_by:
        assert (action.action, action.reason) == (
            "ignore",
            f"excluded by SIGHTLINE_EXCLUDE ({excluded_by})",
        )
    else:
        assert action.action == "tag"


@pytest.mark.parametrize("write_path", ["copy", "function"])
def test_a_refused_write_counts_as_failed_and_the_job_ends(
    bucket, db, db_url, moto_endpoint, write_path
) -> None:
    """A photo whose row the database refuses (here a CHECK constraint) fails alone, counts as
    failed against its job, and the job, its listing complete, ends done."""
    s3, name = bucket
    keys = ["users/r/1.jpg", "users/r/poison.jpg", "users/r/2.jpg"]
    etags = {k: _put(s3, name, k, i) for i, k in enumerate(keys)}
    with db, db.cursor() as cur:
        cur.execute(
            "ALTER TABLE photos ADD CONSTRAINT no_poison CHECK (key <> 'users/r/poison.jpg')"
        )
        job_id = jobs.create(cur, "backfill", {"test": True})
        jobs.save_checkpoint(cur, job_id, {"complete": True}, listed=3, published=3)
    settings = Settings(
        allow_untrained=True, arch="tiny", s3_endpoint_url=moto_endpoint, write_path=write_path
    )
    rt = WorkerRuntime(settings, db_url)
    outcomes = rt.tag_batch([_task(name, k, e, job_id) for k, e in etags.items()])
    assert outcomes == ["tagged", "failed", "tagged"]
    job = _job(db, job_id)
    assert (job.state, job.done, job.failed, job.skipped) == ("done", 2, 1, 0)
