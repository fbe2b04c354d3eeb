"""Prometheus metrics of one worker process: photos by outcome, failures by reason kind,
batch sizes, stage latencies and queue lag.

Each runtime owns its own registry (no global state), served on SIGHTLINE_METRICS_PORT when
the operator sets it. Labels come from small fixed sets, never from free text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from workers.errors import MODEL_FAULT_PREFIX, TransientError

# Where a photo's fault was found; the error text itself goes to the photo row and the logs.
FAILURE_REASONS = (
    "photo",  # the object is not a usable image: corrupt, unsupported, too large
    "model",  # the network's output could not be stored: NaN, infinity (e.g. fp16 overflow)
    "write_refused",  # the database refused the row (bad data or a bug)
    "transient",  # an S3, database or broker fault: the photo will be retried
    "parked",  # retries spent: left failed for an operator
    "unexpected",  # a bug escaped a batch: its photos are retried
)
OUTCOMES = (
    "tagged",
    "failed",
    "gone",
    "stale",
    "skipped",
    "deferred",
    "deleted",
    "ignored",
    "retry",
)
STAGES = ("check", "fetch", "decode", "model", "write")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Upload to write: seconds on a quiet system, hours when a backlog drains.
_LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class WorkerMetrics:
    """The worker's metrics in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.photos = Counter(
            "sightline_photos", "Photos handled, by final outcome", ["outcome"], registry=r
        )
        self.failures = Counter(
            "sightline_photo_failures", "Photo failures, by reason kind", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "sightline_batch_size", "Photos per batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "sightline_stage_seconds",
            "Time per batch spent in each stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_lag = Histogram(
            "sightline_queue_lag_seconds",
            "From the upload event's time to the photo's row being written",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        # Every label value exists from the start, so a dashboard sees zeros, not gaps.
        for outcome in OUTCOMES:
            self.photos.labels(outcome)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        for stage in STAGES:
            self.stage_seconds.labels(stage)

    def watch_jobs(self, live_jobs: Callable[[], Sequence[Any]]) -> None:
        """Report the running and paused library jobs on every scrape.

        ``live_jobs`` returns ``workers.jobs.Job`` rows (an empty list when the database is
        unreachable). Labels are the job's id, kind and state: only live jobs, so few.
        """
        self.registry.register(_JobsCollector(live_jobs))

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose /metrics over HTTP from a daemon thread."""
        start_http_server(port, addr=addr, registry=self.registry)

    # ------------------------------------------------------------------ hooks
    def stage(self, name: str, seconds: float) -> None:
        self.stage_seconds.labels(name).observe(seconds)

    def failure(self, reason: str, count: int = 1) -> None:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason kind: {reason!r}")
        self.failures.labels(reason).inc(count)

    def written(self, item: Mapping[str, Any], outcome: str, now: float | None = None) -> None:
        """One photo row written by a batch: its failure kind and its queue lag."""
        if outcome.startswith("error: "):
            self.failure("write_refused")
            return
        if outcome == "failed":  # a PhotoError, or a network output it could not store
            model = str(item.get("error") or "").startswith(MODEL_FAULT_PREFIX)
            self.failure("model" if model else "photo")
        if outcome != "stale":
            lag = lag_seconds(item.get("event_time"), now)
            if lag is not None:
                self.queue_lag.observe(lag)

    def outcome(self, outcome: Any) -> None:
        """One photo's outcome outside a batch (a forgotten photo)."""
        self.batch_outcomes([outcome])

    def batch(self, tasks: Sequence[Mapping[str, Any]], outcomes: Sequence[Any]) -> None:
        """A finished batch: its size and each photo's outcome."""
        self.batch_size.observe(len(tasks))
        self.batch_outcomes(outcomes)

    def batch_outcomes(self, outcomes: Sequence[Any]) -> None:
        retries = 0
        for outcome in outcomes:
            if isinstance(outcome, TransientError):
                retries += 1
            elif outcome in OUTCOMES:
                self.photos.labels(outcome).inc()
        if retries:
            self.photos.labels("retry").inc(retries)
            self.failure("transient", retries)


def lag_seconds(event_time: str | None, now: float | None = None) -> float | None:
    """Seconds since an ISO 8601 event time (None when absent or unreadable).

    A time slightly ahead of this machine's clock (skew) counts as no lag at all.
    """
    if not event_time:
        return None
    try:
        at = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:  # S3 and MinIO send UTC; a naive time is taken as UTC
        at = at.replace(tzinfo=UTC)
    return max(0.0, (now if now is not None else time.time()) - at.timestamp())


class _JobsCollector:
    """``sightline_job_tasks{job,kind,state,count}`` and ``sightline_job_eta_seconds``."""

    def __init__(self, live_jobs: Callable[[], Sequence[Any]]) -> None:
        self.live_jobs = live_jobs

    def describe(self) -> list:
        return []  # collected at scrape time only: the registry must not call the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = GaugeMetricFamily(
            "sightline_job_tasks",
            "Tasks of each live library job by count (listed, published, done, failed, skipped)",
            labels=["job", "kind", "state", "count"],
        )
        eta = GaugeMetricFamily(
            "sightline_job_eta_seconds",
            "Seconds left for each live library job at its rate so far",
            labels=["job", "kind", "state"],
        )
        for j in self.live_jobs():
            labels = [str(j.id), j.kind, j.state]
            for name in ("listed", "published", "done", "failed", "skipped"):
                tasks.add_metric([*labels, name], float(getattr(j, name)))
            left = j.eta_s()
            if left is not None:
                eta.add_metric(labels, left)
        yield tasks
        yield eta
