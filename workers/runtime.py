"""What a worker process holds for its lifetime: settings, the model, clients, releases."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from sightline.settings import Settings
from workers import job_tasks, jobs
from workers.db import DatabaseError, connect
from workers.errors import ObjectGone, TransientError
from workers.fetch import fetch, s3_client
from workers.inference import SceneLandmarkModel
from workers.logs import photo_fields
from workers.metrics import WorkerMetrics
from workers.photo_copy import write_photos_copy
from workers.photos import PhotoError
from workers.pipeline import LiveRelease, Prepared, infer, prepare
from workers.store import (
    load_live_releases,
    stale_keys,
    status_item,
    tagged_item,
    write_photos,
)

log = logging.getLogger("sightline.worker")

_RELEASE_TTL_S = 30.0  # how long a worker trusts its view of the live releases

# What a task ended as: a status string, or a TransientError to retry.
Outcome = str | TransientError


@dataclass
class StageTimes:
    """Milliseconds spent per stage, summed over batches (for logs and the benchmark)."""

    ms: dict[str, float] = field(default_factory=dict)
    photos: int = 0
    batches: int = 0
    observe: Callable[[str, float], None] | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - t0
            self.ms[name] = self.ms.get(name, 0.0) + seconds * 1000
            if self.observe:
                self.observe(name, seconds)


def _job_key(task: Mapping[str, Any]) -> tuple[str, str, int | None]:
    return (task["bucket"], task["key"], job_tasks.job_of(task))


class WorkerRuntime:
    """Built once at the process entry point; tasks call into it."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        *,
        io_threads: int = 8,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.model = SceneLandmarkModel.from_settings(settings)
        self.metrics = metrics or WorkerMetrics()
        self.times = StageTimes(observe=self.metrics.stage)
        self._io = ThreadPoolExecutor(io_threads, thread_name_prefix="sightline-io")
        # Decoding is CPU-bound (Pillow releases the GIL): one thread per core.
        self._decode_pool = ThreadPoolExecutor(
            os.cpu_count() or 2, thread_name_prefix="sightline-decode"
        )
        self._s3: Any = None
        self._local = threading.local()  # a database connection per batch thread
        self._releases: dict[str, LiveRelease] = {}
        self._live: list[LiveRelease] = []
        self._live_at = 0.0
        self._warned_releases: set[str] = set()
        self.metrics.watch_jobs(self.live_jobs)

    # ------------------------------------------------------------------ clients
    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = s3_client(self.settings.s3_endpoint_url, self.settings.s3_timeout_s)
        return self._s3

    def conn(self) -> Any:
        """This thread's database connection (one per batch thread; reconnects after faults)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = connect(self.database_url, timeout_s=self.settings.db_timeout_s)
            except DatabaseError as exc:
                raise TransientError(str(exc)) from exc
            local.conn = conn
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.close()
            self._local.conn = None

    def _connection_lost(self, exc: psycopg2.Error) -> bool:
        """A server gone away shows as OperationalError, InterfaceError ("connection already
        closed") or a DatabaseError with no SQLSTATE ("server closed the connection
        unexpectedly"): all transient. An error the server answered with a code is not."""
        conn = getattr(self._local, "conn", None)
        lost = conn is None or bool(conn.closed) or exc.pgcode is None
        return lost or isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)

    def _unavailable(self, exc: psycopg2.Error) -> TransientError:
        self._drop_conn()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return TransientError(f"database unavailable: {first}")

    def live_releases(self) -> list[LiveRelease]:
        if time.monotonic() - self._live_at > _RELEASE_TTL_S:
            conn = self.conn()
            with conn, conn.cursor() as cur:
                self._live = load_live_releases(cur, self._releases)
            self._live_at = time.monotonic()
            mine = self.model.meta.model_version if self.model.meta else None
            for r in self._live:
                if r.model_version != mine and r.version not in self._warned_releases:
                    # Its centroids come from another model's embeddings: matching would be
                    # noise, so new photos are not matched against it. Say so once.
                    log.warning(
                        "release %s was built from model %s, this worker runs %s: "
                        "new photos are not matched against it",
                        r.version,
                        r.model_version,
                        mine,
                    )
                    self._warned_releases.add(r.version)
        return self._live

    def live_jobs(self) -> list[Any]:
        """Running and paused jobs for the metrics, on a connection of the scrape's own."""
        try:
            conn = connect(self.database_url, timeout_s=5.0, register=False)
        except DatabaseError:
            return []
        try:
            with conn, conn.cursor() as cur:
                return jobs.list_jobs(cur, live_only=True)
        except psycopg2.Error:
            return []
        finally:
            conn.close()

    # ------------------------------------------------------------------ tasks
    def tag_batch(self, tasks: list[Mapping[str, Any]]) -> list[Outcome]:
        """Tag a batch: fetch and decode concurrently, one forward pass, one write round trip.

        Returns per task its final status ('tagged', 'failed', 'gone', 'stale', 'skipped': a
        library job's no-op or a cancelled job's task), 'deferred' (its job is paused) or the
        TransientError that should make it retry. Never raises for one photo's fault.
        """
        try:
            outcomes = self._tag_batch(tasks)
        except TransientError as exc:
            outcomes = [exc] * len(tasks)
        except psycopg2.Error as exc:
            if not self._connection_lost(exc):
                raise
            outcomes = [self._unavailable(exc)] * len(tasks)
        self.metrics.batch(tasks, outcomes)
        return outcomes

    def _tag_batch(self, tasks: list[Mapping[str, Any]]) -> list[Outcome]:
        self.model.load()
        outcomes: list[Outcome | None] = [None] * len(tasks)
        conn = self.conn()
        with self.times.stage("check"), conn, conn.cursor() as cur:
            todo = self._triage(cur, tasks, outcomes)
        if not todo:  # every task decided without S3 or the model (e.g. a repeated backfill)
            self.times.photos += len(tasks)
            self.times.batches += 1
            return [o if o is not None else "failed" for o in outcomes]
        with self.times.stage("fetch"):
            fetched = list(self._io.map(lambda i: self._fetch(tasks[i]), todo))
        # On a CPU-only machine decoding and the network share the cores: take turns, each
        # with every core, instead of thrashing. On a GPU decoding overlaps the forward pass.
        with self.model.cpu_turn(), self.times.stage("decode"):
            prepared = list(self._decode_pool.map(self._prepare, fetched))
        items: list[tuple[int, dict[str, Any]]] = []
        ready = [(i, p) for i, p in zip(todo, prepared) if isinstance(p, Prepared)]
        for i, p in zip(todo, prepared):
            if isinstance(p, TransientError):
                outcomes[i] = p
            elif isinstance(p, ObjectGone):
                items.append((i, status_item(tasks[i], "gone", str(p))))
            elif isinstance(p, PhotoError):
                items.append((i, status_item(tasks[i], "failed", str(p))))
        releases = self.live_releases()
        with self.times.stage("model"):
            results = infer([p for _, p in ready], self.model, releases)
        items += [(i, tagged_item(tasks[i], r)) for (i, _), r in zip(ready, results)]
        with self.times.stage("write"), conn, conn.cursor() as cur:
            # Another copy of a job task already written and counted: drop this one's write.
            counted = job_tasks.claim(cur, [tasks[i] for i, _ in items])
            dups = {i for i, _ in items if _job_key(tasks[i]) in counted}
            for i in dups:
                outcomes[i] = "skipped"
            items = [(i, item) for i, item in items if i not in dups]
            write = write_photos_copy if self.settings.write_path == "copy" else write_photos
            written = write(cur, [item for _, item in items])
            self._settle(items, written, outcomes)
            job_tasks.count(cur, [(tasks[i], outcomes[i]) for i in todo])
        self.times.photos += len(tasks)
        self.times.batches += 1
        return [o if o is not None else "failed" for o in outcomes]

    def _triage(
        self, cur: Any, tasks: list[Mapping[str, Any]], outcomes: list[Outcome | None]
    ) -> list[int]:
        """Decide what needs no fetch (stale, a job's no-op, a paused or cancelled job's task,
        a repeated job task) and count those against their jobs; the indexes left to tag."""
        assert self.model.meta is not None
        stale = stale_keys(cur, tasks)  # a newer event already decided these keys
        states = job_tasks.job_states(cur, tasks)
        # Library jobs: a photo tagged, unchanged and on this model is a no-op (no fetch).
        unchanged = job_tasks.unchanged_keys(cur, tasks, self.model.meta.model_version)
        todo: list[int] = []
        decided: list[int] = []
        cancelled: list[Mapping[str, Any]] = []
        seen: set[tuple[str, str, int | None]] = set()
        for i, t in enumerate(tasks):
            state = states.get(job_tasks.job_of(t) or -1)
            repeat = state is not None and _job_key(t) in seen
            seen.add(_job_key(t))
            if repeat:
                outcomes[i] = "skipped"  # a second copy in this batch: the first one counts
            elif state == "paused":
                outcomes[i] = "deferred"  # the task comes back later (see workers.app)
            elif state == "cancelled":
                outcomes[i] = "skipped"
                cancelled.append(t)
            elif (t["bucket"], t["key"]) in stale:
                outcomes[i] = "stale"
                decided.append(i)
            elif (t["bucket"], t["key"]) in unchanged:
                outcomes[i] = "skipped"
                decided.append(i)
            else:
                todo.append(i)
        job_tasks.count(cur, [(tasks[i], outcomes[i]) for i in decided])
        job_tasks.count_unmarked(cur, cancelled, "skipped")
        return todo

    def _settle(
        self,
        items: list[tuple[int, dict[str, Any]]],
        written: list[tuple[int | None, str]],
        outcomes: list[Outcome | None],
    ) -> None:
        """Each written item's outcome, logged and measured."""
        for (i, item), (_, outcome) in zip(items, written):
            self.metrics.written(item, outcome)
            if outcome.startswith("error: "):
                log.error(
                    "write refused for %s/%s: %s",
                    item["bucket"],
                    item["key"],
                    outcome,
                    extra=photo_fields(item),
                )
                outcome = "failed"
            elif item["status"] != "tagged" and outcome != "stale":
                log.warning(
                    "%s s3://%s/%s: %s",
                    outcome,
                    item["bucket"],
                    item["key"],
                    item["error"],
                    extra=photo_fields(item),
                )
            outcomes[i] = outcome

    def _fetch(self, task: Mapping[str, Any]) -> bytes | Exception:
        try:
            return self.fetch_bytes(task)
        except (TransientError, ObjectGone, PhotoError) as exc:
            return exc
        except Exception as exc:  # an unexpected client fault: treat as transient, bounded
            return TransientError(f"{type(exc).__name__}: {exc}")

    def _prepare(self, data: bytes | Exception) -> Prepared | Exception:
        if isinstance(data, Exception):
            return data
        try:
            return prepare(data, self.model, max_pixels=self.settings.max_pixels)
        except PhotoError as exc:
            return exc
        except Exception as exc:  # a decoder bug: fail this photo, not its whole batch
            log.exception("unexpected error decoding a photo")
            return PhotoError(f"cannot decode: {type(exc).__name__}: {exc}")

    def fetch_bytes(self, task: Mapping[str, Any]) -> bytes:
        """The object's bytes from S3 (the benchmark swaps in bytes held in memory)."""
        return fetch(
            self.s3,
            task["bucket"],
            task["key"],
            task.get("version_id"),
            self.settings.max_object_bytes,
        )

    def tag(self, task: Mapping[str, Any]) -> Outcome:
        return self.tag_batch([task])[0]

    def forget(self, task: Mapping[str, Any]) -> Outcome:
        return self.record(task, "deleted", None)

    def park(self, task: Mapping[str, Any], reason: str) -> bool:
        """Retries are spent: leave the photo failed with its reason for an operator.

        False when the database could not record it (the caller must not drop the task).
        """
        self.metrics.failure("parked")
        outcome = self.record(task, "failed", f"gave up after retries: {reason}")
        if isinstance(outcome, TransientError):
            log.error(
                "cannot park %s/%s: %s",
                task.get("bucket"),
                task.get("key"),
                outcome,
                extra=photo_fields(task),
            )
            return False
        return True

    def record(self, task: Mapping[str, Any], status: str, reason: str | None) -> Outcome:
        try:
            conn = self.conn()
            with conn, conn.cursor() as cur:
                ((_, outcome),) = write_photos(cur, [status_item(task, status, reason)])
                job_tasks.count(cur, [(task, outcome)])
        except TransientError as exc:
            return exc
        except psycopg2.Error as exc:
            if not self._connection_lost(exc):
                raise
            return self._unavailable(exc)
        return "failed" if outcome.startswith("error: ") else outcome
