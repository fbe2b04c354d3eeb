"""A worker takes JSON messages only: a pickled message is refused unread, and work goes on."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
import redis
from celery import Celery

from handlers.contract import TAG_QUEUE, TAG_TASK
from sightline.samples import synthetic_jpeg
from tests.support import object_task, start_worker, stop_worker, wait_for, worker_env


class _Planted:
    """Unpickling this creates a file: proof that a worker ran code from a message."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.slow
def test_pickled_message_is_refused_and_the_worker_goes_on(
    db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """A pickle-serialised task on the tag queue is never unpickled (no planted file) and
    leaves the queue; the same worker then tags a JSON task."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"p-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="users/p/ok.jpg", Body=synthetic_jpeg(seed=4))
    marker = tmp_path / "unpickled"
    log = tmp_path / "w.log"
    worker = start_worker(worker_env(db_url, redis_url, moto_endpoint), log=log)
    try:
        evil = Celery(broker=redis_url, set_as_current=False)
        evil.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
        evil.send_task(
            TAG_TASK,
            kwargs={**object_task(bucket, "x.jpg", owner="p"), "key": _Planted(marker)},
            queue=TAG_QUEUE,
        )
        r = redis.Redis.from_url(redis_url)
        wait_for(
            lambda: "untrusted content" in log.read_text(errors="replace"),
            timeout=90,
            what=f"the worker to refuse the pickle ({log})",
        )
        assert r.llen(TAG_QUEUE) == 0
        Celery(broker=redis_url, set_as_current=False).send_task(
            TAG_TASK, kwargs=object_task(bucket, "users/p/ok.jpg", owner="p"), queue=TAG_QUEUE
        )

        def tagged() -> bool:
            with db, db.cursor() as cur:
                cur.execute("SELECT key, status FROM photos")
                return cur.fetchall() == [("users/p/ok.jpg", "tagged")]

        wait_for(tagged, timeout=90, what=f"the JSON task after the pickle ({log})")
        assert worker.poll() is None
        assert r.hlen("unacked") == 0  # the refused message is not waiting to come back
    finally:
        stop_worker(worker)
    assert not marker.exists()
