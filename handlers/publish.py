"""Send tasks by name over one broker connection per batch. Celery loads on first use."""

from __future__ import annotations

from typing import Any

from sightline.contract import QUEUE_OF, ObjectTask


class CeleryPublisher:
    """Publishes tasks with ``send_task``: JSON only, publisher confirms where offered."""

    def __init__(self, broker_url: str, transport_options: dict[str, Any] | None = None) -> None:
        self.broker_url = broker_url
        self.transport_options = transport_options or {}
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from celery import Celery  # deferred: the handler's cold start stays light

            options = {"confirm_publish": True, **self.transport_options}
            self._app = Celery("sightline-handler", broker=self.broker_url, set_as_current=False)
            self._app.conf.update(
                task_serializer="json",
                accept_content=["json"],
                broker_transport_options=options,
                broker_connection_retry=False,
                broker_connection_max_retries=0,
            )
        return self._app

    def publish(self, tasks: list[tuple[str, ObjectTask]]) -> list[Exception | None]:
        results: list[Exception | None] = []
        try:
            with self.app.producer_or_acquire() as producer:
                for name, kwargs in tasks:
                    try:
                        self.app.send_task(
                            name,
                            kwargs=dict(kwargs),
                            queue=QUEUE_OF[name],
                            producer=producer,
                            retry=False,
                        )
                        results.append(None)
                    except Exception as exc:  # the record fails; its source retries it
                        results.append(exc)
        except Exception as exc:  # no connection at all: every record of the batch fails
            results.extend([exc] * (len(tasks) - len(results)))
        return results
