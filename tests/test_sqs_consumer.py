"""`sightline consume sqs` against moto's SQS server and a real Redis broker: partial batch
failures come back, a slow batch stays invisible past the visibility timeout, SIGTERM loses
nothing and exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import boto3
import pytest
from test_handler_brokers import drain

from handlers.contract import QUEUE_OF, TAG_TASK, ObjectTask
from handlers.core import handle
from handlers.publish import CeleryPublisher
from handlers.rules import OwnerRule
from handlers.sqs_consumer import SqsConsumer
from sightline.sqs_source import s3_record
from tests.support import ROOT, wait_for

TAG_QUEUE = QUEUE_OF[TAG_TASK]


def _queue(endpoint: str, visibility_s: int) -> tuple[Any, str]:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    url = sqs.create_queue(
        QueueName=f"c-{uuid.uuid4().hex[:10]}",
        Attributes={"VisibilityTimeout": str(visibility_s)},
    )["QueueUrl"]
    return sqs, url


def _send(sqs: Any, url: str, keys: list[str]) -> None:
    for n, key in enumerate(keys):
        body = {"Records": [s3_record("photos", key, sequencer=f"{n + 1:02X}")]}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))


def _counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) as SQS reports them."""
    a = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


class FailingOnce:
    """The real Redis publisher, except that the named keys fail on their first publish (an
    injected broker fault for some tasks of a batch, as a full or flapping broker gives)."""

    def __init__(self, real: CeleryPublisher, keys: set[str]) -> None:
        self.real, self.to_fail = real, set(keys)

    def publish(self, tasks: list[tuple[str, ObjectTask]]) -> list[Exception | None]:
        out: list[Exception | None] = [None] * len(tasks)
        send = []
        for i, (_name, task) in enumerate(tasks):
            if task["key"] in self.to_fail:
                self.to_fail.discard(task["key"])
                out[i] = ConnectionError("injected: broker refused this task")
            else:
                send.append(i)
        for i, err in zip(send, self.real.publish([tasks[i] for i in send])):
            out[i] = err
        return out


def test_failed_messages_stay_on_the_queue_and_come_back(moto_endpoint, redis_url) -> None:
    """Two of six messages fail to publish: the four others are deleted at once, the two stay
    (in flight) and, after the visibility timeout, come back and are published; every key
    ends on the broker exactly once and the queue is empty."""
    sqs, url = _queue(moto_endpoint, visibility_s=2)
    keys = [f"users/alice/p{n}.jpg" for n in range(6)]
    _send(sqs, url, keys)
    real = CeleryPublisher(redis_url)
    publisher = FailingOnce(real, {keys[1], keys[4]})

    def handler(event: dict, context: Any) -> dict:
        return handle(event, OwnerRule(), publisher).response()

    consumer = SqsConsumer(sqs, url, handler, wait_s=1)
    try:
        received, failed = 0, 0
        deadline = time.monotonic() + 10
        while received < 6 and time.monotonic() < deadline:  # moto may split the first receive
            r, f = consumer.poll_once()
            received, failed = received + r, failed + f
        assert (received, failed) == (6, 2)
        assert _counts(sqs, url) == (0, 2)  # the failures are held back, not deleted
        first = drain(redis_url, TAG_QUEUE, 4)
        assert sorted(b[1]["key"] for _h, b in first) == sorted(set(keys) - {keys[1], keys[4]})

        deadline = time.monotonic() + 15
        while consumer.stats.received < 8 and time.monotonic() < deadline:
            consumer.poll_once()
        assert consumer.stats.received == 8, "the failed messages did not come back"
        second = drain(redis_url, TAG_QUEUE, 2)
        assert sorted(b[1]["key"] for _h, b in second) == sorted([keys[1], keys[4]])
        assert _counts(sqs, url) == (0, 0)
        assert consumer.stats.deleted == 6 and consumer.stats.failed == 2
    finally:
        real.close()


def test_a_handler_that_raises_leaves_the_whole_batch(moto_endpoint) -> None:
    """A handler exception fails every message of the batch (Lambda's rule); none is deleted."""
    sqs, url = _queue(moto_endpoint, visibility_s=30)
    _send(sqs, url, ["users/alice/a.jpg", "users/alice/b.jpg"])

    def handler(event: dict, context: Any) -> dict:
        raise RuntimeError("CELERY_BROKER_URL is not set")

    consumer = SqsConsumer(sqs, url, handler, wait_s=1, error_pause_s=0)
    got = 0
    deadline = time.monotonic() + 10
    while got < 2 and time.monotonic() < deadline:
        got += consumer.poll_once()[0]
    assert got == 2 and consumer.stats.deleted == 0
    assert _counts(sqs, url) == (0, 2)


def test_a_slow_batch_stays_invisible_past_the_visibility_timeout(moto_endpoint) -> None:
    """A batch that takes 6 s on a 2 s visibility timeout is never received by a second
    consumer meanwhile (the heartbeat re-hides it), and is deleted when done."""
    sqs, url = _queue(moto_endpoint, visibility_s=2)
    _send(sqs, url, ["users/alice/slow.jpg"])
    started = threading.Event()

    def slow(event: dict, context: Any) -> dict:
        started.set()
        time.sleep(6)
        return {"batchItemFailures": []}

    consumer = SqsConsumer(sqs, url, slow, wait_s=1)
    worker = threading.Thread(target=lambda: wait_for(lambda: consumer.poll_once()[0], 10))
    worker.start()
    assert started.wait(10)
    other = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    stolen = []
    while worker.is_alive():  # bounded: the slow batch ends after 6 s
        stolen += other.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
        time.sleep(0.25)
    worker.join()
    assert stolen == [], "a second consumer received the batch in hand"
    assert consumer.stats.heartbeats >= 3
    assert consumer.stats.deleted == 1
    assert _counts(sqs, url) == (0, 0)


def _consume_cli(url: str, endpoint: str, redis_url: str, *extra: str) -> subprocess.Popen:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "CELERY_BROKER_URL": redis_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sightline", "consume", "sqs", "--queue", url,
         "--endpoint-url", endpoint, *extra],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_hand_and_loses_nothing(moto_endpoint, redis_url) -> None:
    """SIGTERM while 40 messages are being consumed: exit status 0, and every key is either
    published to the broker or still on the queue (none deleted without its task)."""
    sqs, url = _queue(moto_endpoint, visibility_s=3)
    keys = [f"users/bob/k{n:02d}.jpg" for n in range(40)]
    _send(sqs, url, keys)
    proc = _consume_cli(url, moto_endpoint, redis_url, "--wait", "1", "--batch-size", "5")
    try:
        import redis

        r = redis.Redis.from_url(redis_url)
        wait_for(lambda: r.llen(TAG_QUEUE) > 0, timeout=60, what="the first published task")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped:" in out
    published = [b[1]["key"] for _h, b in drain(redis_url, TAG_QUEUE, len(keys), timeout=5)]
    assert len(published) == len(set(published))
    time.sleep(3.5)  # whatever was in flight becomes visible again
    left: list[str] = []
    deadline = time.monotonic() + 20
    while len(published) + len(left) < len(keys) and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            left.append(json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"])
    assert sorted(published + left) == sorted(keys)


@pytest.mark.slow
def test_sigterm_on_an_idle_long_poll_exits_at_once(moto_endpoint, redis_url) -> None:
    """An idle consumer in a 20 s long poll stops within 5 s of SIGTERM, status 0."""
    _sqs, url = _queue(moto_endpoint, visibility_s=30)
    proc = _consume_cli(url, moto_endpoint, redis_url, "--wait", "20")
    try:
        assert proc.stdout is not None
        wait_for(lambda: "consuming" in (proc.stdout.readline() or ""), timeout=60,
                 what="the consumer to start")  # fmt: skip
        time.sleep(1)  # inside the long poll
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert took < 5
