"""The Celery app and its tasks. Configured at the process entry point (`configure`).

`sightline.tag` is a batching task: messages are buffered and flushed every N photos or T
seconds into one forward pass. Late acknowledgement: a batch's messages are acked after its
writes (idempotent upserts), so a crash redelivers instead of losing photos.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import psycopg2
from celery import Celery, Task
from celery_batches import Batches

from handlers.contract import (
    FORGET_TASK,
    MAINTENANCE_QUEUE,
    RETAG_CHUNK_TASK,
    TAG_QUEUE,
    TAG_TASK,
)
from workers.errors import TransientError
from workers.logs import photo_fields
from workers.runtime import TagElsewhere, WorkerRuntime
from workers.settings import BACKOFF_CAP_S

log = logging.getLogger("sightline.worker")

app = Celery("sightline", set_as_current=False)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    # A worker killed mid-batch (OOM, SIGKILL) leaves its messages to be redelivered.
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=32,
    task_routes={
        TAG_TASK: {"queue": TAG_QUEUE},
        FORGET_TASK: {"queue": MAINTENANCE_QUEUE},
        RETAG_CHUNK_TASK: {"queue": MAINTENANCE_QUEUE},
    },
    task_default_queue=TAG_QUEUE,
    task_soft_time_limit=100,
    task_time_limit=120,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_runtime: WorkerRuntime | None = None
_PAUSED_RECHECK_S = 10.0  # how often a paused job's task comes back to look
_retry_policy = {"max_retries": 5, "base_s": 2.0, "cap_s": BACKOFF_CAP_S}


def configure(
    runtime: WorkerRuntime,
    broker_url: str,
    transport_options: dict | None = None,
    *,
    batch_size: int = 16,
    batch_wait_s: float = 0.2,
    max_retries: int = 5,
    retry_base_s: float = 2.0,
    batch_time_limit_s: float = 120.0,
) -> Celery:
    """Bind the process's runtime, broker and batching; call once before the worker starts."""
    global _runtime
    _runtime = runtime
    _retry_policy.update(max_retries=max_retries, base_s=retry_base_s)
    app.conf.broker_url = broker_url
    if transport_options:
        app.conf.broker_transport_options = transport_options
    app.conf.task_time_limit = batch_time_limit_s
    app.conf.task_soft_time_limit = max(1.0, batch_time_limit_s * 5 / 6)
    tag.flush_every = batch_size
    tag.flush_interval = batch_wait_s
    # Enough prefetched messages to fill the batch in flight and the next one (the
    # visibility timeout, Settings.visibility_timeout_s, counts on no more).
    app.conf.worker_prefetch_multiplier = max(4, 2 * batch_size)
    return app


def runtime() -> WorkerRuntime:
    if _runtime is None:
        raise RuntimeError("worker runtime not configured: start workers with `sightline worker`")
    return _runtime


def backoff_s(retries: int) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**retries))."""
    return random.uniform(0, min(_retry_policy["cap_s"], _retry_policy["base_s"] * 2**retries))


def _retry_or_park(task: Task, kwargs: Mapping[str, Any], retries: int, exc: Exception) -> str:
    rt = runtime()
    limit = _retry_policy["max_retries"]
    # Parking writes to the database too: while that is down, keep the message cycling at
    # the last backoff rather than ack the photo away unrecorded.
    if retries >= limit and rt.park(kwargs, str(exc)):
        return "failed"
    log.warning(
        "retry %d for %s/%s in backoff: %s",
        retries + 1,
        kwargs.get("bucket"),
        kwargs.get("key"),
        exc,
        extra=photo_fields(kwargs),
    )
    # Re-published before this message is acked: at-least-once, never lost.
    task.apply_async(
        kwargs=dict(kwargs), countdown=backoff_s(min(retries, limit)), retries=retries + 1
    )
    return "retrying"


@app.task(name=TAG_TASK, base=Batches, bind=True, flush_every=16, flush_interval=0.2)
def tag(self: Task, requests: list[Any]) -> list[str]:
    """Tag a batch of uploaded photos (identities only in the messages)."""
    rt = runtime()
    try:
        outcomes = rt.tag_batch([r.kwargs for r in requests])
    except Exception as exc:  # a bug: retry the photos rather than ack them away
        log.exception("batch of %d failed unexpectedly", len(requests))
        rt.metrics.failure("unexpected", len(requests))
        outcomes = [TransientError(f"unexpected {type(exc).__name__}: {exc}")] * len(requests)
    result = []
    for req, outcome in zip(requests, outcomes):
        if outcome == "deferred":  # its job is paused: back in a while, no retry spent
            retries = int((req.request_dict or {}).get("retries") or 0)
            self.apply_async(kwargs=dict(req.kwargs), countdown=_PAUSED_RECHECK_S, retries=retries)
        elif isinstance(outcome, TransientError):
            retries = int((req.request_dict or {}).get("retries") or 0)
            outcome = _retry_or_park(self, req.kwargs, retries, outcome)
        result.append(outcome)
    return result


@app.task(name=FORGET_TASK, bind=True, max_retries=None)
def forget(self: Task, **kwargs: Any) -> str:
    """Drop a deleted photo's tags, keeping a tombstone that orders later events."""
    rt = runtime()
    if not all(isinstance(kwargs.get(k), str) and kwargs.get(k) for k in ("bucket", "key")):
        log.error("refused a delete task without a bucket and a key: %.300r", kwargs)
        rt.metrics.failure("unexpected", 1)
        return "failed"  # no retry makes it one
    try:
        outcome = rt.forget(kwargs)
        if isinstance(outcome, TagElsewhere):
            # Published before this delete is acked: a worker with a model tags the version.
            tag.apply_async(kwargs=outcome.task)
            return "handed to the tag queue"
    except Exception as exc:  # a bug, a schema fault, a broker refusing: retry, never ack
        # No limit: an outage also shows as errors no list foresees (a soft time limit
        # after a hung S3 or database), and giving up there would drop a real delete.
        log.exception(
            "delete of %s/%s failed unexpectedly", kwargs.get("bucket"), kwargs.get("key")
        )
        rt.metrics.failure("unexpected", 1)
        outcome = TransientError(f"unexpected {type(exc).__name__}: {exc}")
    else:
        rt.metrics.outcome(outcome)
    if isinstance(outcome, TransientError):
        retries, limit = self.request.retries, _retry_policy["max_retries"]
        if retries >= limit:
            # A delete has nowhere to be parked but the database: retry at the last backoff
            # until it is recorded, so a deleted photo never stays in anyone's albums.
            log.error(
                "cannot record the delete of %s/%s yet: %s",
                kwargs.get("bucket"),
                kwargs.get("key"),
                outcome,
                extra=photo_fields(kwargs),
            )
        raise self.retry(exc=outcome, countdown=backoff_s(min(retries, limit)))
    return outcome


@app.task(name=RETAG_CHUNK_TASK, bind=True, max_retries=None)
def retag_chunk(self: Task, job_id: int, chunk: int) -> str:
    """One chunk of a fleet re-tag or scene re-file (workers/retag_fleet.py); idempotent."""
    from workers.retag_fleet import run_chunk

    rt = runtime()
    try:
        conn = rt.db.get()
        result = run_chunk(conn, int(job_id), int(chunk), worker=self.request.hostname or "")
    except (TransientError, psycopg2.Error) as exc:
        rt.db.drop()  # a lost connection is opened afresh on the retry
        retries = self.request.retries
        log.warning("job %s chunk %s: retry %d: %s", job_id, chunk, retries + 1, exc)
        countdown = backoff_s(min(retries, _retry_policy["max_retries"]))
        raise self.retry(exc=exc, countdown=countdown) from exc
    if result.outcome == "paused":  # checked again later; `sightline jobs resume` restarts it
        raise self.retry(countdown=10)
    return result.outcome
