"""How many Postgres connections a worker holds: one per batch thread, no more."""

from __future__ import annotations

import time
import uuid

import boto3
import pytest
from celery import Celery

from tests.support import object_task, start_worker, stop_worker, worker_env


@pytest.mark.slow
def test_worker_holds_at_most_one_connection_per_batch_thread(
    db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """A worker with --concurrency 2 working through 120 photos never holds more than two
    database connections (what pool sizing in docs/operations.md relies on)."""
    bucket = f"c-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    worker = start_worker(
        worker_env(db_url, redis_url, moto_endpoint),
        "--concurrency=2",
        "--batch-size=4",
        "--batch-wait-ms=50",
        log=tmp_path / "w.log",
    )
    peak, written = 0, 0
    try:
        sender = Celery(broker=redis_url, set_as_current=False)
        for i in range(120):  # objects that do not exist: checked and written as gone
            sender.send_task("sightline.tag", kwargs=object_task(bucket, f"k{i}.jpg"), queue="tag")
        deadline = time.monotonic() + 120
        while written < 120 and time.monotonic() < deadline:
            with db, db.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'sightline' AND pid <> pg_backend_pid()"
                )
                peak = max(peak, cur.fetchone()[0])
                cur.execute("SELECT count(*) FROM photos")
                written = cur.fetchone()[0]
            time.sleep(0.05)
    finally:
        stop_worker(worker)
    assert written == 120, (tmp_path / "w.log").read_text()[-2000:]
    with db, db.cursor() as cur:
        cur.execute("SELECT DISTINCT status FROM photos")
        assert cur.fetchall() == [("gone",)]
    assert 1 <= peak <= 2
