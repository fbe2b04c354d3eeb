"""Late acknowledgement: a worker killed with SIGKILL loses no photo, and another worker
tags its photos within the derived visibility timeout."""

from __future__ import annotations

import signal
import time
import uuid

import boto3
import pytest
from celery import Celery

from handlers.contract import normalize_sequencer
from sightline.samples import synthetic_jpeg
from tests.support import start_worker, stop_worker, wait_for, worker_env
from workers.settings import Settings


def test_default_visibility_timeout_is_minutes_and_yields_to_explicit_options() -> None:
    """Derived from the batch and retry limits: minutes by default, not kombu's hour;
    Redis and SQS get it, RabbitMQ (acks and heartbeats) does not; explicit options win."""
    redis = Settings(broker_url="redis://h:6379/0")
    vt = redis.visibility_timeout_s()
    assert 60 < vt < 15 * 60
    assert redis.transport_options()["visibility_timeout"] == vt
    assert Settings(broker_url="sqs://").transport_options() == {"visibility_timeout": vt}
    assert Settings(broker_url="amqp://h//").transport_options() == {}
    longer = Settings(broker_url="redis://h/0", batch_time_limit_s=600).visibility_timeout_s()
    assert longer > vt and Settings(max_retries=8).visibility_timeout_s() > vt
    explicit = Settings(broker_url="redis://h/0", broker_options={"visibility_timeout": 9})
    assert explicit.transport_options()["visibility_timeout"] == 9


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
    # Unacked messages of a dead consumer come back after the visibility timeout, which is
    # the derived default: kept small here through the limits it derives from.
    limits = {"batch_time_limit_s": 3.0, "max_retries": 0, "retry_base_s": 1.0}
    env = worker_env(
        db_url,
        redis_url,
        moto_endpoint,
        SIGHTLINE_BATCH_TIME_LIMIT_S="3",
        SIGHTLINE_MAX_RETRIES="0",
        SIGHTLINE_RETRY_BASE_S="1",
    )
    settings = Settings(broker_url=redis_url, **limits)
    bound = settings.visibility_timeout_s(200)  # the second worker's batch window
    restore_every = settings.transport_options(200)["unacked_restore_interval"]
    # A long batch window: the first worker holds every message, unacked, when it dies
    # (the second worker, on the default window, is the one that hands them back).
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
    killed = time.monotonic()
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
        elapsed = time.monotonic() - killed
        print(f"redelivered and tagged {elapsed:.1f} s after SIGKILL (bound {bound} s)")
        # The bound, one sweep, and 30 s for a worker to start and tag six photos here.
        assert elapsed < bound + restore_every + 30, (elapsed, bound)
    finally:
        stop_worker(second)
    with db, db.cursor() as cur:
        cur.execute("SELECT key, attempts FROM photos ORDER BY key")
        assert cur.fetchall() == [(k, 1) for k in sorted(keys)]
