"""The Celery app and its two tasks. Configured at the process entry point (`configure`)."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Celery, Task

from sightline.contract import (
    FORGET_TASK,
    MAINTENANCE_QUEUE,
    TAG_QUEUE,
    TAG_TASK,
)
from workers.errors import TransientError
from workers.runtime import WorkerRuntime

log = logging.getLogger("sightline.worker")

app = Celery("sightline", set_as_current=False)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    # Writes are idempotent upserts, so redelivery after a crash is safe: ack late.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    task_routes={TAG_TASK: {"queue": TAG_QUEUE}, FORGET_TASK: {"queue": MAINTENANCE_QUEUE}},
    task_default_queue=TAG_QUEUE,
    task_soft_time_limit=300,
    task_time_limit=360,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_runtime: WorkerRuntime | None = None
MAX_RETRIES = 5


def configure(
    runtime: WorkerRuntime,
    broker_url: str,
    transport_options: dict | None = None,
    *,
    retries: bool = True,
) -> Celery:
    """Bind the process's runtime and broker; call once before starting the worker."""
    global _runtime, MAX_RETRIES
    _runtime = runtime
    MAX_RETRIES = MAX_RETRIES if retries else 0
    app.conf.broker_url = broker_url
    if transport_options:
        app.conf.broker_transport_options = transport_options
    return app


def runtime() -> WorkerRuntime:
    if _runtime is None:
        raise RuntimeError("worker runtime not configured: start workers with `sightline worker`")
    return _runtime


def _run(task: Task, method: str, kwargs: dict[str, Any]) -> str:
    rt = runtime()
    try:
        return getattr(rt, method)(kwargs)
    except TransientError as exc:
        if task.request.retries >= MAX_RETRIES:
            rt.park(kwargs, str(exc))
            return "failed"
        # Exponential backoff with full jitter, capped: 2, 4, 8 ... seconds.
        delay = random.uniform(0, min(300, 2 ** (task.request.retries + 1)))
        raise task.retry(exc=exc, countdown=delay) from exc
    except Exception as exc:  # a bug or an unexpected fault: park the photo, keep the worker
        log.exception("unexpected error on %s/%s", kwargs.get("bucket"), kwargs.get("key"))
        rt.park(kwargs, f"unexpected {type(exc).__name__}: {exc}")
        return "failed"


@app.task(name=TAG_TASK, bind=True, max_retries=None)
def tag(self: Task, **kwargs: Any) -> str:
    """Tag one uploaded photo (identity only in the message)."""
    return _run(self, "tag", kwargs)


@app.task(name=FORGET_TASK, bind=True, max_retries=None)
def forget(self: Task, **kwargs: Any) -> str:
    """Drop a deleted photo's tags, keeping a tombstone that orders later events."""
    return _run(self, "forget", kwargs)


QUEUES = (TAG_QUEUE, MAINTENANCE_QUEUE)
