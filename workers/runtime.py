"""What a worker process holds for its lifetime (settings, the model, S3 and database clients,
the live releases) and the batch path that uses them."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg2

from handlers.rules import declares_image
from workers import job_tasks, jobs
from workers.db import DatabaseError, ThreadConnections, connect
from workers.errors import ObjectGone, RequestRefused, TransientError
from workers.fetch import fetch, s3_client
from workers.inference import ModelUnavailable, SceneLandmarkModel
from workers.logs import photo_fields
from workers.metrics import WorkerMetrics
from workers.migrate import hold_schema
from workers.pgtext import unstorable
from workers.photo_copy import write_photos_copy
from workers.photos import NoPhoto, NotAnImage, PhotoError
from workers.pipeline import Prepared, album_scores, infer, prepare, unstorable_output
from workers.releases import LiveRelease, LiveReleases
from workers.scenemaps import LiveSceneMap, in_force, install
from workers.settings import Settings
from workers.store import status_item, superseded_in_batch, tagged_item, write_photos
from workers.versions import head_current, holds, retarget, stored_state

log = logging.getLogger("sightline.worker")

# What a task ended as: a status string, or a TransientError to retry.
Outcome = str | TransientError


@dataclass(frozen=True)
class TagElsewhere:
    """A delete revealed a current version to tag, and this process has no model (a
    ``-Q maintenance`` worker loads none): the tag task for it, which the caller publishes
    to the tag queue before acking the delete."""

    task: dict[str, Any]


@dataclass
class StageTimes:
    """Milliseconds spent per stage, summed over batches (for logs and the benchmark)."""

    ms: dict[str, float] = field(default_factory=dict)
    photos: int = 0
    batches: int = 0
    observe: Callable[[str, float], None] | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def stage(self, name: str, into: dict[str, float] | None = None):
        """Time a stage; ``into`` also gets this batch's own milliseconds."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - t0
            self.ms[name] = self.ms.get(name, 0.0) + seconds * 1000
            if into is not None:
                into[name] = round(into.get(name, 0.0) + seconds * 1000, 1)
            if self.observe:
                self.observe(name, seconds)


def _log_outcome(
    task: Mapping[str, Any], outcome: str, error: str | None, ms: dict[str, float], batch: int
) -> None:
    """One line per photo outcome (tagged, failed, gone, stale): identity, the reason, the
    batch's stage times in ms and its size."""
    warned = outcome == "tagged" and bool(error)  # tagged with a warning (workers/exif.py)
    level = logging.WARNING if outcome in ("failed", "gone") or warned else logging.INFO
    log.log(
        level,
        "%s s3://%s/%s%s",
        outcome,
        task.get("bucket"),
        task.get("key"),
        f": {error}" if error else "",
        extra=photo_fields(
            task, outcome=outcome, error=error, timings_ms=dict(ms), batch_photos=batch
        ),
    )


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
        self.db = ThreadConnections(database_url, timeout_s=settings.db_timeout_s)
        self.releases = LiveReleases()
        self._scene_maps: LiveSceneMap | None = None
        self.metrics.watch_jobs(self.live_jobs)

    # ------------------------------------------------------------------ clients
    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = s3_client(self.settings.s3_endpoint_url, self.settings.s3_timeout_s)
        return self._s3

    def live_releases(self) -> list[LiveRelease]:
        """The releases new photos are matched against (re-read every 30 s at most)."""
        mine = self.model.meta.model_version if self.model.meta else None
        return self.releases.get(self.db.get(), mine)

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

    @property
    def scene_maps(self) -> LiveSceneMap:
        if self._scene_maps is None:
            self.model.load()
            meta = self.model.meta
            assert meta is not None
            self._scene_maps = LiveSceneMap(meta.categories, frozenset(meta.excluded))
        return self._scene_maps

    def scene_map_in_force(self) -> tuple[int | None, Any]:
        """(version, SceneMap) new photos are filed by; (None, None): none stored, the
        model's own map is used."""
        return self.scene_maps.get(self.db.get())

    def install_scene_map(self, conn: Any, source: str) -> int:
        """At start: install this worker's map when none is in force (the first worker
        of a fleet); returns the version in force, which may be another's."""
        self.model.load()
        assert self.model.scene_map is not None
        version = install(conn, self.model.scene_map, source, only_if_none=True)
        with conn, conn.cursor() as cur:
            self.scene_maps.refresh(cur, version)
        if self.scene_maps.scene_map != self.model.scene_map:
            log.warning(
                "scene map %d is in force: new photos are filed by it, not by this worker's "
                "SIGHTLINE_SCENE_MAP/SIGHTLINE_SIFT (`sightline retag --scene-map` changes it)",
                version,
            )
        return version

    # ------------------------------------------------------------------ tasks
    def tag_batch(self, tasks: list[Mapping[str, Any]]) -> list[Outcome]:
        """Tag a batch: fetch and decode concurrently, one forward pass, one write round trip.

        Returns per task its final status ('tagged', 'failed', 'gone', 'stale', 'ignored',
        'skipped': a library job's no-op or a cancelled job's task), 'deferred' (its job is
        paused) or the
        TransientError that should make it retry. Never raises for one photo's fault.
        """
        try:
            outcomes = self._tag_batch(tasks)
        except TransientError as exc:
            outcomes = [exc] * len(tasks)
        except psycopg2.Error as exc:
            if not self.db.lost(exc):
                raise
            outcomes = [self.db.unavailable(exc)] * len(tasks)
        self.metrics.batch(tasks, outcomes)
        return outcomes

    def _tag_batch(self, tasks: list[Mapping[str, Any]]) -> list[Outcome]:
        self.model.load()
        started = time.perf_counter()
        ms: dict[str, float] = {}  # this batch's stage times, for the photo outcome lines
        outcomes: list[Outcome | None] = [None] * len(tasks)
        # A task Postgres cannot store (NUL in its key...) is refused alone: in the batch's
        # one JSON or array parameter it would fail every photo with it.
        errors: dict[int, str | None] = {}
        storable = []
        for i, t in enumerate(tasks):
            reason = unstorable(t)
            if reason:
                outcomes[i] = "failed"
                errors[i] = f"refused: {reason}"
            else:
                storable.append(i)
        conn = self.db.get()
        with self.times.stage("check", ms), conn, conn.cursor() as cur:
            todo = self._triage(cur, tasks, storable, outcomes)
        if not todo:  # every task decided without S3 or the model (e.g. a repeated backfill)
            return self._finish(tasks, outcomes, errors, ms, started)
        with self.times.stage("fetch", ms):
            fetched = list(self._io.map(lambda i: self._fetch(tasks[i]), todo))
        # On a CPU-only machine decoding and the network share the cores: take turns, each
        # with every core, instead of thrashing. On a GPU decoding overlaps the forward pass.
        with self.model.cpu_turn(), self.times.stage("decode", ms):
            prepared = list(self._decode_pool.map(self._prepare, fetched))
        items: list[tuple[int, dict[str, Any]]] = []
        ready = [(i, p) for i, p in zip(todo, prepared) if isinstance(p, Prepared)]
        for i, p in zip(todo, prepared):
            if isinstance(p, TransientError):
                outcomes[i] = p
            elif isinstance(p, ObjectGone):
                items.append((i, status_item(tasks[i], "gone", str(p))))
            elif isinstance(p, NoPhoto) or (
                isinstance(p, NotAnImage) and not _has_extension(tasks[i]["key"])
            ):
                # an empty object, text under text/plain, an opaque key's (SIGHTLINE_OPAQUE_KEYS)
                # bytes that are no image: not a fault; a photo the key held leaves its albums
                items.append((i, status_item(tasks[i], "ignored", str(p))))
            elif isinstance(p, PhotoError):
                items.append((i, status_item(tasks[i], "failed", str(p))))
        releases = self.live_releases()
        _, scene_map = self.scene_map_in_force()
        with self.times.stage("model", ms):
            results = infer([p for _, p in ready], self.model, releases, scene_map)
        for (i, _), r in zip(ready, results):
            reason = unstorable_output(r)  # NaN from the network fails that photo alone
            items.append(
                (i, status_item(tasks[i], "failed", reason) if reason else tagged_item(tasks[i], r))
            )
        with self.times.stage("write", ms), conn, conn.cursor() as cur:
            hold_schema(cur)  # first: an upgrade in progress finishes before this write
            # The map in force, locked until these rows commit: if another was installed
            # since, file these photos by it (an install's re-file may have passed them).
            if self.scene_maps.refresh(cur, in_force(cur, lock=True)):
                self._refile([item for _, item in items])
            # Another copy of a job task already written and counted: drop this one's write.
            counted = job_tasks.claim(cur, [tasks[i] for i, _ in items])
            dups = {i for i, _ in items if _job_key(tasks[i]) in counted}
            for i in dups:
                outcomes[i] = "skipped"
            items = [(i, item) for i, item in items if i not in dups]
            write = write_photos_copy if self.settings.write_path == "copy" else write_photos
            written = write(cur, [item for _, item in items])
            self._settle(items, written, outcomes, errors)
            job_tasks.count(cur, [(tasks[i], outcomes[i]) for i in todo])
            refused = [tasks[i] for i in todo if (errors.get(i) or "").startswith("write refused")]
            job_tasks.count_refused(cur, refused)
        return self._finish(tasks, outcomes, errors, ms, started)

    def _triage(
        self,
        cur: Any,
        tasks: list[Mapping[str, Any]],
        storable: list[int],
        outcomes: list[Outcome | None],
    ) -> list[int]:
        """Decide what needs no fetch (stale, a job's no-op, a paused or cancelled job's task,
        a repeated job task) and count those against their jobs; the indexes left to tag."""
        assert self.model.meta is not None
        mine = [tasks[i] for i in storable]
        meta = self.model.meta
        # one query: each task judged by its own sequencer (a newer event already decided
        # it); library jobs' no-ops (tagged, unchanged, this model and heads: no fetch)
        found = job_tasks.triage(
            cur,
            mine,
            meta.model_version,
            scene_trained=meta.scene_head.trained,
            embedding_trained=meta.embedding_head.trained,
        )
        stale = {storable[n] for n in found.stale | superseded_in_batch(mine)}
        noop = {storable[n] for n in found.noop}
        states = found.states
        todo: list[int] = []
        decided: list[int] = []
        cancelled: list[Mapping[str, Any]] = []
        seen: set[tuple[str, str, int | None]] = set()
        for i in storable:
            t = tasks[i]
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
            elif i in stale:
                outcomes[i] = "stale"
                decided.append(i)
            elif i in noop:
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
        errors: dict[int, str | None],
    ) -> None:
        """Each written item's outcome and the reason its log line gives, measured."""
        for (i, item), (_, outcome) in zip(items, written):
            self.metrics.written(item, outcome)
            errors[i] = item.get("error")
            if outcome.startswith("error: "):
                errors[i] = f"write refused: {outcome}"
                outcome = "failed"
            elif item.get("warning") and outcome == "tagged":
                errors[i] = f"warning: {item['warning']}"  # e.g. an unreadable EXIF block
            outcomes[i] = outcome

    def _finish(
        self,
        tasks: list[Mapping[str, Any]],
        outcomes: list[Outcome | None],
        errors: dict[int, str | None],
        ms: dict[str, float],
        started: float,
    ) -> list[Outcome]:
        """The batch's outcomes, counted and logged one line per photo."""
        self.times.photos += len(tasks)
        self.times.batches += 1
        final = [o if o is not None else "failed" for o in outcomes]
        ms["total"] = round((time.perf_counter() - started) * 1000, 1)
        for i, (task, outcome) in enumerate(zip(tasks, final)):
            if not isinstance(outcome, TransientError):  # a retry logs its own line
                _log_outcome(task, outcome, errors.get(i), ms, len(tasks))
        return final

    def _refile(self, items: list[dict[str, Any]]) -> None:
        tagged = [item for item in items if item["status"] == "tagged"]
        sm = self.scene_maps.scene_map or self.model.scene_map
        if not tagged or sm is None:
            return
        probs = np.asarray([item["scene_probs"] for item in tagged], dtype=np.float32)
        for item, albums in zip(tagged, album_scores(sm, probs, k=self.model.max_albums)):
            item["albums"] = [[a, s] for a, s in albums]

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
        except NotAnImage as exc:
            # the bytes decide; the Content-Type S3 gave only explains (SDKs often default it)
            ctype = getattr(data, "content_type", None)
            if not ctype:
                return exc
            kind = NotAnImage if declares_image(ctype) and type(exc) is NotAnImage else NoPhoto
            return kind(f"{exc}; Content-Type {ctype}")
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

    def forget(self, task: Mapping[str, Any]) -> Outcome | TagElsewhere:
        """A delete event, reconciled with the object's current state before it destroys
        anything (workers.versions): no current version deletes the photo; a current
        version the row does not hold is tagged (TagElsewhere where this process has no
        model); one it holds leaves it as it is ("stale")."""
        reason = unstorable(task)
        if reason:
            log.error("refused %r/%r: %s", task.get("bucket"), task.get("key"), reason)
            return "failed"
        try:
            current = head_current(self.s3, task["bucket"], task["key"])
            if current is None:
                return self.record(task, "deleted", None)
            conn = self.db.get()
            with conn, conn.cursor() as cur:
                stored = stored_state(cur, task["bucket"], task["key"])
            if holds(stored, current):
                return "stale"
            log.info(
                "delete of s3://%s/%s (version %s) revealed current version %s: tagging it",
                task["bucket"],
                task["key"],
                task.get("version_id"),
                current.version_id,
                extra=photo_fields(task),
            )
            target = retarget(task, current)
            try:
                self.model.load()
            except ModelUnavailable as exc:
                log.info("no model in this worker (%s): handed to the tag queue", exc)
                return TagElsewhere(target)
            # _tag_batch, not tag_batch: the forget task counts this outcome once itself
            return self._tag_batch([target])[0]
        except RequestRefused as exc:  # no retry makes it valid: fail once, in one line
            log.error("refused %r/%r: %s", task.get("bucket"), task.get("key"), exc)
            return "failed"
        except TransientError as exc:
            return exc
        except psycopg2.Error as exc:
            if not self.db.lost(exc):
                raise
            return self.db.unavailable(exc)

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
        _log_outcome(task, "failed", f"gave up after retries: {reason}", {}, 1)
        return True

    def record(self, task: Mapping[str, Any], status: str, reason: str | None) -> Outcome:
        if unstorable(task):
            return "failed"  # nothing of it can be written; tag_batch/forget said why
        try:
            conn = self.db.get()
            with conn, conn.cursor() as cur:
                hold_schema(cur)
                ((_, outcome),) = write_photos(cur, [status_item(task, status, reason)])
                job_tasks.count(cur, [(task, outcome)])
                if outcome.startswith("error: "):
                    job_tasks.count_refused(cur, [task])
        except TransientError as exc:
            return exc
        except psycopg2.Error as exc:
            if not self.db.lost(exc):
                raise
            return self.db.unavailable(exc)
        return "failed" if outcome.startswith("error: ") else outcome


def _has_extension(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return "." in name.lstrip(".")
