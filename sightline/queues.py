"""Queue depths on the broker: how many tasks wait in each Celery queue.

Redis and RabbitMQ answer through kombu's passive queue declaration (which also counts the
priority sub-queues Celery's Redis transport keeps); other brokers are reported as unknown.
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
            None, "unset", dict.fromkeys(queues), error="CELERY_BROKER_URL is not set"
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
        return QueueReport(safe, _scheme(broker_url), dict.fromkeys(queues))
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
    return report
