"""The MinIO webhook over real HTTP on loopback: token checked, tasks on a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.contract import QUEUE_OF, TAG_TASK
from handlers.publish import CeleryPublisher
from handlers.rules import OwnerRule
from handlers.webhook import WebhookApp, make_server
from sightline.embedded import free_port
from tests.support import ROOT, drain, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "events"
TOKEN = "s3cr3t-t0ken"


def request(url: str, body: bytes | None, auth: str | None, method: str = "POST") -> tuple:
    req = urllib.request.Request(url, data=body, method=method)
    if auth is not None:
        req.add_header("Authorization", auth)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def serve(broker_url: str) -> Iterator[str]:
    publisher = CeleryPublisher(broker_url, timeout_s=2)
    server = make_server(WebhookApp(TOKEN, OwnerRule(), publisher))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        publisher.close()


@pytest.fixture
def webhook(redis_url: str) -> Iterator[str]:
    yield from serve(redis_url)


@pytest.fixture
def dead_broker_webhook() -> Iterator[str]:
    yield from serve(f"redis://127.0.0.1:{free_port()}/0")


MINIO_PUT = (FIXTURES / "minio_put.json").read_bytes()


def test_good_token_publishes_the_decoded_key(webhook: str, redis_url: str) -> None:
    """A POST with MinIO's bearer token answers 200 and the tag task arrives on the broker."""
    status, body = request(webhook, MINIO_PUT, f"Bearer {TOKEN}")
    assert status == 200
    assert json.loads(body) == {"actions": {"tag": 1}, "errors": []}
    [(headers, task)] = drain(redis_url, QUEUE_OF[TAG_TASK], 1)
    assert headers["task"] == TAG_TASK
    assert task[1]["key"] == "users/carol/Sommer + See/über.jpg"
    assert task[1]["owner"] == "carol"


@pytest.mark.parametrize(
    "auth", [None, "", "Bearer wrong", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x"]
)
def test_bad_token_is_refused_and_nothing_is_sent(webhook: str, redis_url: str, auth) -> None:
    """Without the exact bearer token the answer is 401 and no task is published."""
    status, _ = request(webhook, MINIO_PUT, auth)
    assert status == 401
    assert drain(redis_url, QUEUE_OF[TAG_TASK], 0, timeout=0.3) == []


def test_head_liveness_and_bad_bodies(webhook: str) -> None:
    """HEAD (MinIO's liveness check) answers 200; a body that is not a JSON object is a 400."""
    assert request(webhook, None, f"Bearer {TOKEN}", method="HEAD")[0] == 200
    assert request(webhook, b"{nope", f"Bearer {TOKEN}")[0] == 400
    assert request(webhook, b"[1]", f"Bearer {TOKEN}")[0] == 400


def test_test_event_is_accepted_without_tasks(webhook: str, redis_url: str) -> None:
    """An s3:TestEvent is not an error: 200, nothing published."""
    status, body = request(
        webhook, (FIXTURES / "s3_test_event.json").read_bytes(), f"Bearer {TOKEN}"
    )
    assert (status, json.loads(body)["actions"]) == (200, {"ignore": 1})
    assert drain(redis_url, QUEUE_OF[TAG_TASK], 0, timeout=0.3) == []


def test_broker_down_answers_503_so_minio_retries(dead_broker_webhook: str) -> None:
    """When the task cannot be published the webhook says so with 503 (MinIO retries)."""
    status, body = request(dead_broker_webhook, MINIO_PUT, f"Bearer {TOKEN}")
    assert status == 503
    assert "publish failed" in json.loads(body)["errors"][0]


@pytest.mark.slow
def test_webhook_process_serves_and_refuses_to_start_without_a_token(redis_url: str) -> None:
    """`python -m handlers.webhook` serves MinIO's POSTs; with no token it exits with one line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CELERY_BROKER_URL": redis_url}
    env.pop("SIGHTLINE_WEBHOOK_TOKEN", None)
    cmd = [sys.executable, "-m", "handlers.webhook", "--host", "127.0.0.1"]
    refused = subprocess.run([*cmd, "--port", "0"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "sightline webhook: error: the webhook needs a token (SIGHTLINE_WEBHOOK_TOKEN)"
    )
    port = free_port()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env={**env, "SIGHTLINE_WEBHOOK_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: _up(url), timeout=20, what="the webhook process")
        assert request(url, MINIO_PUT, f"Bearer {TOKEN}")[0] == 200
        assert len(drain(redis_url, QUEUE_OF[TAG_TASK], 1)) == 1
    finally:
        proc.terminate()
        proc.wait(10)


def _up(url: str) -> bool:
    try:
        return request(url + "healthz", None, None, method="GET")[0] == 200
    except OSError:
        return False


def test_a_port_or_body_timeout_no_server_can_use_is_refused(capsys) -> None:
    """--port 99999 was uvicorn's 80-line traceback; --body-timeout nan was accepted."""
    from handlers.asgi import WebhookASGI
    from handlers.webhook import main

    with pytest.raises(SystemExit) as stop:
        main(["--port", "99999"])
    assert stop.value.code == 2
    assert "--port must be 0 to 65535, got 99999" in capsys.readouterr().err
    for timeout in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="body timeout must be above 0"):
            WebhookASGI(None, body_timeout_s=timeout)  # type: ignore[arg-type]
