"""The handler's guards: a bucket allow-list, and the webhook's caps on request bodies."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.config import HandlerConfig, parse_buckets
from handlers.contract import QUEUE_OF, TAG_TASK
from handlers.core import plan
from handlers.publish import CeleryPublisher
from handlers.rules import OwnerRule
from handlers.webhook import MAX_BODY, WebhookApp, make_server
from tests.support import drain, run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "events"
TOKEN = "allow-list-token"
MINIO_PUT = (FIXTURES / "minio_put.json").read_bytes()  # bucket "photos"


def _s3_event(*buckets: str) -> dict:
    return {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "eventTime": "2024-06-01T12:00:00.000Z",
                "s3": {"bucket": {"name": b}, "object": {"key": "users/a/x.jpg", "size": 5}},
            }
            for b in buckets
        ]
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        (" , ", None),
        ("photos", frozenset({"photos"})),
        (" photos , uploads-eu ,", frozenset({"photos", "uploads-eu"})),
    ],
)
def test_allowed_buckets_setting_is_comma_separated(raw, expected) -> None:
    """SIGHTLINE_ALLOWED_BUCKETS is a comma-separated list; blank means every bucket."""
    assert parse_buckets(raw) == expected
    env = {} if raw is None else {"SIGHTLINE_ALLOWED_BUCKETS": raw}
    assert HandlerConfig.from_env(env).allowed_buckets == expected


def test_events_for_other_buckets_are_ignored_with_a_reason() -> None:
    """With an allow-list only its buckets' records become tasks; the others say why not."""
    actions = plan(
        _s3_event("photos", "attacker", "Photos"),
        OwnerRule(),
        allowed_buckets=frozenset({"photos"}),
    )
    assert [a.action for a in actions] == ["tag", "ignore", "ignore"]
    assert actions[1].reason == "bucket not in SIGHTLINE_ALLOWED_BUCKETS ('attacker')"
    assert actions[2].reason == "bucket not in SIGHTLINE_ALLOWED_BUCKETS ('Photos')"
    # Without the list every bucket is work.
    assert [a.action for a in plan(_s3_event("attacker"), OwnerRule())] == ["tag"]


@pytest.mark.slow
def test_events_parse_applies_the_allow_list(tmp_path: Path) -> None:
    """`sightline events parse` shows the same refusal the deployed handler makes."""
    path = tmp_path / "e.json"
    path.write_text(json.dumps(_s3_event("photos", "other")))
    done = run_cli("events", "parse", str(path), env={"SIGHTLINE_ALLOWED_BUCKETS": "photos"})
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["bucket"], r["action"]) for r in rows] == [("photos", "tag"), ("other", "ignore")]


@pytest.fixture
def webhook(redis_url: str) -> Iterator[tuple[str, int]]:
    """The webhook app on loopback, allowing only the bucket "uploads"."""
    publisher = CeleryPublisher(redis_url, timeout_s=2)
    app = WebhookApp(TOKEN, OwnerRule(), publisher, allowed_buckets=frozenset({"uploads"}))
    server = make_server(app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        publisher.close()


def _post(addr: tuple[str, int], headers: dict[str, str], body: bytes = b"") -> int:
    """A raw HTTP POST (so headers such as a negative Content-Length go out as written)."""
    lines = ["POST / HTTP/1.1", "Host: x", f"Authorization: Bearer {TOKEN}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        s.shutdown(socket.SHUT_WR)  # a server waiting for more body would now see EOF
        reply = b""
        while chunk := s.recv(4096):  # the whole answer: the server closes after it
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_webhook_ignores_a_foreign_bucket_and_publishes_nothing(webhook, redis_url) -> None:
    """A MinIO notification for a bucket outside the allow-list is answered 200, no task."""
    status = _post(webhook, {"Content-Length": str(len(MINIO_PUT))}, MINIO_PUT)
    assert status == 200
    assert drain(redis_url, QUEUE_OF[TAG_TASK], 0, timeout=0.3) == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Length": str(MAX_BODY + 1)}, 413),
        ({"Content-Length": "-1"}, 400),
        ({"Transfer-Encoding": "chunked"}, 411),
        ({"Content-Length": "lots"}, 411),
    ],
)
def test_webhook_caps_the_request_body_before_reading_it(webhook, headers, status) -> None:
    """Bodies over 1 MiB, negative or missing lengths are refused without reading the body."""
    assert _post(webhook, headers, b"{}") == status
