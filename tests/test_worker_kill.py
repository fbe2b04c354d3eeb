"""Late acknowledgement: a worker killed with SIGKILL loses no photo."""

from __future__ import annotations

import json
import signal
import uuid

import boto3
import pytest
from celery import Celery

from handlers.contract import normalize_sequencer
from sightline.samples import synthetic_jpeg
from tests.support import start_worker, stop_worker, wait_for, worker_env


@pytest.mark.slow
def test_sigkilled_worker_loses_no_photo(db, db_url, redis_url, moto_endpoint, tmp_path):
    """Tasks a worker had taken but not finished when SIGKILLed are redelivered to the next
    worker: every photo ends tagged exactly once, one row each."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"k-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"users/k/{i}.jpg" for i in range(6)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=i, width=320, height=240))
    # Unacked messages of a dead consumer come back after the visibility timeout.
    env = worker_env(
        db_url,
        redis_url,
        moto_endpoint,
        SIGHTLINE_BROKER_OPTIONS=json.dumps({"visibility_timeout": 3}),
    )
    # A long batch window: the first worker holds every message, unacked, when it dies.
    first = start_worker(
        env, "--batch-size", "100", "--batch-wait-ms", "60000", log=tmp_path / "first.log"
    )
    sender = Celery(broker=redis_url, set_as_current=False)
    for key in keys:
        sender.send_task(
            "sightline.tag",
            queue="tag",
            kwargs={
                "bucket": bucket,
                "key": key,
                "version_id": None,
                "etag": None,
                "size": None,
                "sequencer": normalize_sequencer("01"),
                "event_time": None,
                "owner": "k",
            },
        )
    import redis

    r = redis.Redis.from_url(redis_url)
    wait_for(
        lambda: r.llen("tag") == 0 and r.hlen("unacked") == len(keys),
        timeout=60,
        what="the first worker to take every message",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*) FROM photos")
        assert cur.fetchone()[0] == 0
    second = start_worker(
        env, "--batch-size", "6", "--batch-wait-ms", "200", log=tmp_path / "second.log"
    )
    try:

        def tagged() -> bool:
            with db, db.cursor() as cur:
                cur.execute("SELECT count(*) FROM photos WHERE status = 'tagged'")
                return cur.fetchone()[0] == len(keys)

        wait_for(tagged, timeout=120, what=f"redelivered photos ({tmp_path})")
    finally:
        stop_worker(second)
    with db, db.cursor() as cur:
        cur.execute("SELECT key, attempts FROM photos ORDER BY key")
        assert cur.fetchall() == [(k, 1) for k in sorted(keys)]
