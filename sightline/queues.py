"""Queue depths on the broker: how many tasks wait in each Celery queue, how many are taken
but not yet acknowledged (in flight), and how long the oldest waiting photo has waited.

Redis and RabbitMQ answer ready counts through kombu's passive queue declaration (which also
counts the priority sub-queues Celery's Redis transport keeps); other brokers are reported as
unknown. In flight: on Redis the entries of kombu's ``unacked`` hash, by routing key; on
RabbitMQ ``messages_unacknowledged`` from the management API when it answers (port 15672),
else unknown. The oldest waiting photo (Redis only: the tail of the list is the next message
out) is aged from its event time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# URL scheme -> the broker kinds whose queue depths this module can read.
KNOWN = {
    "redis": "redis",
    "rediss": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "pyamqp": "rabbitmq",
}


@dataclass
class QueueReport:
    broker: str | None  # the URL without its password
    kind: str  # "redis" | "rabbitmq" | the scheme of another broker | "unset"
    depths: dict[str, int | None] = field(default_factory=dict)  # None: unknown
    consumers: dict[str, int] | None = None  # RabbitMQ only: consumers attached per queue
    error: str | None = None
    in_flight: dict[str, int | None] = field(default_factory=dict)  # taken, not acked
    in_flight_note: str | None = None  # why in-flight counts are unknown
    oldest_waiting: dict[str, Any] | None = None  # queue, bucket, key, event_time, age_s

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else url.lower()


def queue_depths(
    broker_url: str | None,
    queues: Sequence[str],
    transport_options: dict[str, Any] | None = None,
    *,
    timeout_s: float = 5.0,
) -> QueueReport:
    """The number of ready messages per queue; never raises for an unreachable broker."""
    if not broker_url:
        return QueueReport(
            None,
            "unset",
            dict.fromkeys(queues),
            error="CELERY_BROKER_URL is not set",
            in_flight=dict.fromkeys(queues),
        )
    from kombu import Connection
    from kombu.utils.url import maybe_sanitize_url

    conn = Connection(
        broker_url, connect_timeout=timeout_s, transport_options=transport_options or {}
    )
    safe = maybe_sanitize_url(broker_url)  # masks a password
    kind = KNOWN.get(_scheme(broker_url))
    if kind is None:
        conn.release()
        return QueueReport(
            safe,
            _scheme(broker_url),
            dict.fromkeys(queues),
            in_flight=dict.fromkeys(queues),
            in_flight_note="unknown for this broker",
        )
    report = QueueReport(safe, kind, consumers={} if kind == "rabbitmq" else None)
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout_s)
        for name in queues:
            channel = conn.channel()
            try:
                _, messages, consumers = channel.queue_declare(queue=name, passive=True)
            except conn.channel_errors:  # never declared, or (Redis) empty: nothing waits
                messages, consumers = 0, 0
            finally:
                channel.close()
            report.depths[name] = int(messages)
            if report.consumers is not None:
                report.consumers[name] = int(consumers)
    except Exception as exc:  # an unreachable broker is part of the report, not a crash
        report.depths = {q: report.depths.get(q) for q in queues}
        first = (str(exc).strip().splitlines() or [""])[0]
        report.error = f"{type(exc).__name__}: {first}"
    finally:
        conn.release()
    report.in_flight = dict.fromkeys(queues)
    if report.error:
        report.in_flight_note = "broker unreachable"
    elif kind == "redis":
        _redis_in_flight(report, broker_url, queues, transport_options or {}, timeout_s)
    else:
        _rabbitmq_in_flight(report, broker_url, queues, timeout_s)
    return report


def _redis_in_flight(
    report: QueueReport,
    url: str,
    queues: Sequence[str],
    options: dict[str, Any],
    timeout_s: float,
) -> None:
    import json

    import redis

    prefix = options.get("global_keyprefix", "")
    client = redis.Redis.from_url(url, socket_timeout=timeout_s)
    try:
        counts = dict.fromkeys(queues, 0)
        for _, raw in client.hscan_iter(prefix + options.get("unacked_key", "unacked")):
            routing_key = json.loads(raw)[2]  # [message, exchange, routing key]
            if routing_key in counts:
                counts[routing_key] += 1
        report.in_flight = dict(counts)
        oldest = None
        for name in queues:
            raw = client.lindex(prefix + name, -1)  # the next message out: the oldest
            found = _photo(raw, name) if raw else None
            if found and (oldest is None or (found["age_s"] or 0) > (oldest["age_s"] or 0)):
                oldest = found
        report.oldest_waiting = oldest
    except Exception as exc:  # the counts are a view: a fault leaves them unknown
        report.in_flight = dict.fromkeys(queues)
        report.in_flight_note = f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


def _photo(raw: bytes, queue: str) -> dict[str, Any] | None:
    """The photo a Celery message on a Redis list is about, aged from its event time."""
    import base64
    import json
    from datetime import UTC, datetime

    message = json.loads(raw)
    body = message.get("body", "")
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    decoded = json.loads(body)
    kwargs = decoded[1] if isinstance(decoded, list) and len(decoded) > 1 else {}
    if not isinstance(kwargs, dict) or "key" not in kwargs:
        return None
    event_time, age = kwargs.get("event_time"), None
    if event_time:
        at = datetime.fromisoformat(str(event_time).replace("Z", "+00:00"))
        age = round((datetime.now(UTC) - at).total_seconds(), 1)
    return {
        "queue": queue,
        "bucket": kwargs.get("bucket"),
        "key": kwargs.get("key"),
        "event_time": event_time,
        "age_s": age,
    }


def _rabbitmq_in_flight(
    report: QueueReport, url: str, queues: Sequence[str], timeout_s: float
) -> None:
    import base64
    import json
    import urllib.request
    from urllib.parse import quote, unquote, urlsplit

    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    auth = f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}"
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    try:
        for name in queues:
            api = f"http://{parts.hostname}:15672/api/queues/{quote(vhost, safe='')}/{quote(name)}"
            request = urllib.request.Request(api, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                    info = json.load(answer)
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # 404: never declared, nothing in flight
                    raise
                info = {}
            report.in_flight[name] = int(info.get("messages_unacknowledged", 0))
    except Exception as exc:
        report.in_flight = dict.fromkeys(queues)
        report.in_flight_note = (
            f"unknown: the RabbitMQ management API does not answer ({type(exc).__name__})"
        )
