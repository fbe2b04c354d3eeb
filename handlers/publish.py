"""Send tasks by name over one broker connection per batch. Celery loads on first use.

JSON only; publisher confirms on AMQP (each publish waits for the broker's ack); on Redis the
batch goes out as one pipeline. A failure fails every task not known to be delivered, so
its source retries it: nothing vanishes, at the price of an occasional duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from handlers.contract import QUEUE_OF, ObjectTask

log = logging.getLogger("sightline.handler")


def default_transport_options(broker_url: str, timeout_s: float) -> dict[str, Any]:
    """Confirms where the broker offers them, and timeouts so a dead broker fails fast."""
    # One quick reconnect for a blip; kombu's default waits 2 s first. The source retries
    # the records anyway, so holding the batch longer buys nothing.
    options: dict[str, Any] = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme.startswith("amqp") or scheme.startswith("pyamqp"):
        options.update(confirm_publish=True, read_timeout=timeout_s, write_timeout=timeout_s)
    elif scheme in {"redis", "rediss"}:
        options.update(socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    return options


class CeleryPublisher:
    """Publishes tasks with ``send_task`` (by name; the handler never imports the tasks)."""

    def __init__(
        self,
        broker_url: str,
        transport_options: Mapping[str, Any] | None = None,
        *,
        queues: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.broker_url = broker_url
        self.transport_options = {
            **default_transport_options(broker_url, timeout_s),
            **(transport_options or {}),
        }
        self.queues = dict(queues or QUEUE_OF)
        self.timeout_s = timeout_s
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from celery import Celery  # deferred: the handler's cold start stays light

            app = Celery("sightline-handler", broker=self.broker_url, set_as_current=False)
            app.conf.update(
                task_serializer="json",
                accept_content=["json"],
                broker_transport_options=self.transport_options,
                broker_connection_timeout=self.timeout_s,
                broker_connection_retry=False,
                broker_connection_max_retries=0,
            )
            self._app = app
        return self._app

    def publish(self, tasks: list[tuple[str, ObjectTask]]) -> list[Exception | None]:
        """Per task, None once the broker has it, or the error that leaves it undelivered."""
        results: list[Exception | None] = [None] * len(tasks)
        if not tasks:
            return results
        app = self.app
        confirmed, batched = 0, False
        try:
            with app.producer_or_acquire() as producer:
                batched = bool(getattr(producer, "supports_batch_publish", False))
                # Declare each queue once per connection here, not on every send (kombu would
                # copy and bind the queue entity per message: a fifth of the cost on Redis).
                for qname in {self.queues[name] for name, _ in tasks}:
                    producer.maybe_declare(app.amqp.queues[qname])
                with producer.batch(len(tasks)) if batched else nullcontext():
                    for name, kwargs in tasks:
                        self._send(producer, name, kwargs)
                        confirmed += 0 if batched else 1
        except Exception as exc:  # broker down or lost mid-batch: the rest must be retried
            # A Redis pipeline that failed may have been partly applied; count none as sent.
            for i in range(0 if batched else confirmed, len(tasks)):
                results[i] = exc
            log.warning("publish failed after %d of %d tasks: %r", confirmed, len(tasks), exc)
            app.close()  # drop the pooled connection; the next batch connects afresh
        return results

    def _send(self, producer: Any, name: str, kwargs: ObjectTask) -> None:
        self.app.send_task(
            name,
            kwargs=dict(kwargs),
            queue=self.queues[name],
            producer=producer,
            retry=False,
            declare=[],  # declared once per batch in publish()
            # Celery would saferepr() the arguments for monitoring; naming the object is enough.
            argsrepr="()",
            kwargsrepr=f"{{'bucket': {kwargs['bucket']!r}, 'key': {kwargs['key']!r}}}",
        )

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
