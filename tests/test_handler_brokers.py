"""Tasks the handler publishes arrive on a real Redis and RabbitMQ with the contract's payload;
a dead broker fails exactly the affected records."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from handlers.contract import FORGET_TASK, QUEUE_OF, TAG_TASK, ObjectTask
from handlers.core import handle
from handlers.publish import CeleryPublisher
from handlers.rules import OwnerRule
from sightline.embedded import free_port
from tests.support import AMQP_URL, ROOT, drain, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "events"
OWNERS = OwnerRule()


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text("utf-8"))


@contextmanager
def amqp_queues() -> Iterator[dict[str, str]]:
    """Task queues on RabbitMQ that only this test uses (others share the broker), deleted after."""
    from kombu import Connection

    tag = uuid.uuid4().hex[:10]
    queues = {TAG_TASK: f"t3-{tag}-tag", FORGET_TASK: f"t3-{tag}-forget"}
    try:
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(f"RabbitMQ is not running at {AMQP_URL}: {exc}")
    try:
        yield queues
    finally:
        with Connection(AMQP_URL) as conn:
            for q in queues.values():
                conn.default_channel.queue_delete(q)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request, redis_url: str):
    """(broker URL, task queues): Redis on our own DB, or RabbitMQ on our own queues."""
    if request.param == "redis":
        yield redis_url, dict(QUEUE_OF)
    else:
        with amqp_queues() as queues:
            yield AMQP_URL, queues


@pytest.fixture
def publisher(broker):
    url, queues = broker
    p = CeleryPublisher(url, queues=queues)
    yield p
    p.close()


def test_sqs_batch_tasks_arrive_with_the_contract_payload(broker, publisher) -> None:
    """A tag and a forget task arrive by name on their queues with exactly the ObjectTask kwargs."""
    url, queues = broker
    result = handle(load("sqs_s3.json"), OWNERS, publisher)
    assert result.response() == {"batchItemFailures": []}

    [(headers, body)] = drain(url, queues[TAG_TASK], 1)
    assert headers["task"] == TAG_TASK
    args, kwargs, _embed = body
    assert args == []
    assert kwargs == {
        "bucket": "photos",
        "key": "users/alice/Holiday 2024/beach day.jpg",
        "version_id": None,
        "etag": "0123456789abcdef0123456789abcdef",
        "size": 1024,
        "sequencer": "0A1B2C3D4E5F678901".ljust(64, "0"),
        "event_time": "2024-06-01T12:00:00.000Z",
        "owner": "alice",
    }
    # An upload's task has every required field and none of the optional ones of jobs.
    assert set(kwargs) == ObjectTask.__required_keys__
    assert ObjectTask.__optional_keys__ == {"job_id", "force"}

    [(headers, body)] = drain(url, queues[FORGET_TASK], 1)
    assert headers["task"] == FORGET_TASK
    assert body[1]["key"] == "users/alice/Москва/café.PNG"
    assert body[1]["owner"] == "alice"


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_publishes_exactly_its_planned_tasks(fixture: str, redis_url: str) -> None:
    """For each envelope, the tasks on Redis are exactly the tag/delete actions, keys decoded."""
    publisher = CeleryPublisher(redis_url)
    try:
        result = handle(load(fixture), OWNERS, publisher)
    finally:
        publisher.close()
    for name, verb in ((TAG_TASK, "tag"), (FORGET_TASK, "delete")):
        want = sorted(a.event.key for a in result.actions if a.action == verb)
        got = drain(redis_url, QUEUE_OF[name], len(want), timeout=5 if want else 0.3)
        assert sorted(body[1]["key"] for _, body in got) == want
        assert all(h["task"] == name for h, _ in got)


def test_malformed_batch_fails_only_the_bad_messages(broker, publisher) -> None:
    """batchItemFailures lists exactly the unreadable messages; the good ones are published."""
    url, queues = broker
    result = handle(load("sqs_malformed.json"), OWNERS, publisher)
    assert result.response() == {
        "batchItemFailures": [
            {"itemIdentifier": "msg-not-json"},
            {"itemIdentifier": "msg-no-bucket"},
        ]
    }
    got = drain(url, queues[TAG_TASK], 2)
    assert sorted(body[1]["key"] for _, body in got) == [
        "users/alice/Holiday 2024/beach day.jpg",
        "users/alice/one+two + three.jpeg",
    ]


def test_duplicates_and_older_records_are_not_sent(redis_url: str) -> None:
    """One task for a record delivered twice; only the newest event for a key is sent."""
    publisher = CeleryPublisher(redis_url)
    try:
        result = handle(load("sqs_ordering.json"), OWNERS, publisher)
    finally:
        publisher.close()
    assert result.failed_message_ids == []
    assert len(drain(redis_url, QUEUE_OF[TAG_TASK], 1)) == 1
    [(_, body)] = drain(redis_url, QUEUE_OF[FORGET_TASK], 1)
    assert body[1]["sequencer"].startswith("0A1B2C3D4E5F6800")


def test_broker_down_fails_every_message_with_work_and_only_those() -> None:
    """With no broker, messages with tasks (and their duplicates) fail; ignored ones do not."""
    publisher = CeleryPublisher(f"redis://127.0.0.1:{free_port()}/0", timeout_s=2)
    try:
        result = handle(load("sqs_ordering.json"), OWNERS, publisher)
        assert result.failed_message_ids == ["msg-a", "msg-a-again", "msg-new"]
        result = handle(load("sqs_s3.json"), OWNERS, publisher)
        assert len(result.failed_message_ids) == 2  # the test event's message is done
        assert all("publish failed" in a.reason for a in result.errors)
    finally:
        publisher.close()


def test_rabbitmq_down_fails_the_batch() -> None:
    """With RabbitMQ unreachable, every message carrying a task is reported failed."""
    publisher = CeleryPublisher(f"amqp://guest:guest@127.0.0.1:{free_port()}//", timeout_s=2)
    try:
        result = handle(load("sqs_malformed.json"), OWNERS, publisher)
    finally:
        publisher.close()
    assert sorted(result.failed_message_ids) == sorted(
        ["msg-good-1", "msg-not-json", "msg-no-bucket", "msg-good-2"]
    )


@pytest.mark.slow
def test_publisher_recovers_when_the_broker_comes_back(tmp_path: Path) -> None:
    """After a failed batch the next batch connects afresh: a restarted broker gets the tasks."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    publisher = CeleryPublisher(url, timeout_s=2)
    server = None
    try:
        assert handle(load("sqs_s3.json"), OWNERS, publisher).failed_message_ids
        server = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=port)
        wait_for(lambda: _pings(client), timeout=10, what="our redis-server")
        assert handle(load("sqs_s3.json"), OWNERS, publisher).failed_message_ids == []
        assert client.llen(QUEUE_OF[TAG_TASK]) == 1
    finally:
        publisher.close()
        if server is not None:
            server.terminate()
            server.wait(10)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def test_rabbitmq_publishes_with_confirms() -> None:
    """On RabbitMQ the channel is in publisher-confirm mode, so a publish returns once acked."""
    with amqp_queues() as queues:
        publisher = CeleryPublisher(AMQP_URL, queues=queues)
        try:
            assert handle(load("s3_put.json"), OWNERS, publisher).errors == []
            with publisher.app.producer_or_acquire() as producer:
                assert producer.channel.connection.confirm_publish is True
                assert producer.channel._confirm_selected is True
        finally:
            publisher.close()
        assert len(drain(AMQP_URL, queues[TAG_TASK], 3)) == 3


def _lambda(event_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "import json, sys; from handlers.lambda_function import handler;"
        "print(json.dumps(handler(json.load(open(sys.argv[1])), None)))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(event_file)],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_lambda_direct_event_publishes_and_returns(redis_url: str) -> None:
    """The Lambda entry point sends an EventBridge event's task and returns no failures."""
    import os

    env = {**os.environ, "CELERY_BROKER_URL": redis_url}
    done = _lambda(FIXTURES / "eventbridge_created.json", env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"batchItemFailures": []}
    [(_, body)] = drain(redis_url, QUEUE_OF[TAG_TASK], 1)
    assert body[1]["key"] == "users/bob/My Photo+1 (é).heic"


@pytest.mark.slow
def test_lambda_direct_event_raises_when_the_broker_is_down() -> None:
    """A direct (non-SQS) invocation raises so that its source retries the event."""
    import os

    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = _lambda(FIXTURES / "sns_s3.json", env)
    assert done.returncode != 0
    assert "HandlerFailed: 1 record(s) failed: publish failed" in done.stderr


@pytest.mark.slow
def test_lambda_sqs_event_reports_failures_instead_of_raising() -> None:
    """An SQS invocation never raises for a dead broker: it names the failed messages."""
    import os

    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = _lambda(FIXTURES / "sqs_malformed.json", env)
    assert done.returncode == 0, done.stderr
    failed = [f["itemIdentifier"] for f in json.loads(done.stdout)["batchItemFailures"]]
    assert failed == ["msg-good-1", "msg-not-json", "msg-no-bucket", "msg-good-2"]


@pytest.mark.slow
@pytest.mark.parametrize("event", [["x"], None, "text", 3])
def test_lambda_refuses_an_event_that_is_no_object_in_one_line(event, tmp_path: Path) -> None:
    """An event that is not a JSON object raises HandlerFailed naming what it is (it raised
    AttributeError or TypeError from deep inside the planner)."""
    import os

    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = _lambda(path, env)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "handlers.lambda_function.HandlerFailed: the event is not a JSON object but a "
        f"{type(event).__name__}"
    )


@pytest.mark.slow
def test_lambda_fails_an_sqs_event_whose_bad_message_has_no_id(redis_url, tmp_path) -> None:
    """A partial batch response names failed messages by id: one that failed without an id
    cannot be named, and answering for the others deleted it as done. The invocation fails
    instead, so SQS retries every message (the good one's task is sent again: idempotent)."""
    import os

    good = json.loads((FIXTURES / "sqs_malformed.json").read_text())["Records"][0]
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"Records": [{"eventSource": "aws:sqs", "body": "garbage"}, good]}))
    done = _lambda(path, {**os.environ, "CELERY_BROKER_URL": redis_url})
    assert done.returncode != 0
    assert "HandlerFailed: 1 record(s) failed" in done.stderr.strip().splitlines()[-1]
