"""Run a backfill job: publish each page's tasks with backpressure and a rate limit, then
checkpoint the page in the job's row, so a killed backfill resumes after its last page.

A page is published before its checkpoint is written: a kill in between re-publishes that
page on resume (at-least-once), and the workers count each photo once per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from handlers.contract import TAG_TASK, ObjectTask
from handlers.core import Publisher
from sightline.backfill.select import Work
from workers import jobs

log = logging.getLogger("sightline.backfill")


class PublishFailed(RuntimeError):
    """The broker refused tasks after retries; the job stays resumable from its checkpoint."""


@dataclass
class Pacing:
    """Backpressure and rate: publishing waits while the tag queue holds more than
    ``max_queue`` tasks, and never sends more than ``rate`` tasks per second."""

    max_queue: int | None = 512
    rate: float | None = None  # tasks/s; None: as fast as the queue allows
    chunk: int = 500  # tasks per publish round trip
    poll_s: float = 0.5
    depth: Callable[[], int | None] | None = None  # None or an unknown depth: rate only
    _t0: float = field(default=0.0, repr=False)
    _sent: int = field(default=0, repr=False)
    waited_s: float = field(default=0.0)

    def chunk_size(self) -> int:
        # never more than max_queue at once: the depth is checked between chunks
        chunk = min(self.chunk, self.max_queue) if self.max_queue else self.chunk
        if self.rate:  # small chunks keep a low rate smooth
            return max(1, min(chunk, int(self.rate / 4) or 1))
        return chunk

    def before(self, n: int, alive: Callable[[], bool]) -> bool:
        """Block until ``n`` tasks may go; False when the job stopped while waiting."""
        t = time.monotonic()
        if self.depth is not None and self.max_queue is not None:
            while True:
                depth = self.depth()
                if depth is None or depth <= self.max_queue:
                    break
                if not alive():
                    return False
                time.sleep(self.poll_s)
        if self.rate:
            now = time.monotonic()
            if not self._t0:
                self._t0 = now
            due = self._t0 + self._sent / self.rate
            if due > now:
                time.sleep(due - now)
            self._sent += n
        self.waited_s += time.monotonic() - t
        return True


@dataclass
class Outcome:
    job_id: int
    state: str
    listed: int = 0
    published: int = 0
    pages: int = 0


class Backfill:
    """One job's publishing loop. ``conn`` is an autocommit-off psycopg2 connection used only
    for the job row and the selection queries (short transactions)."""

    def __init__(
        self,
        conn: Any,
        job_id: int,
        publisher: Publisher,
        pacing: Pacing,
        *,
        attempts: int = 5,
        on_page: Callable[[jobs.Job], None] | None = None,
    ) -> None:
        self.conn = conn
        self.job_id = job_id
        self.publisher = publisher
        self.pacing = pacing
        self.attempts = attempts
        self.on_page = on_page

    def state(self) -> str | None:
        with self.conn, self.conn.cursor() as cur:
            return jobs.state_of(cur, self.job_id)

    def _wait_while_paused(self) -> str | None:
        state = self.state()
        while state == "paused":
            time.sleep(self.pacing.poll_s)
            state = self.state()
        return state

    def run(self, pages: Iterator[Work]) -> Outcome:
        """Publish every page; returns how the job stands when publishing ends."""
        out = Outcome(self.job_id, "running")
        with self.conn, self.conn.cursor() as cur:  # a killed run's page is listed again
            jobs.note_sending(cur, self.job_id, 0)
        for work in pages:
            state = self._wait_while_paused()
            if state != "running":
                out.state = state or "gone"
                return out
            sent, stopped = self._publish(work.tasks)
            if stopped:  # cancelled while waiting for the queue: count what went out
                with self.conn, self.conn.cursor() as cur:
                    jobs.add(cur, self.job_id, listed=work.listed, published=sent)
                    jobs.note_sending(cur, self.job_id, 0)
                out.listed += work.listed
                out.published += sent
                out.state = self.state() or "gone"
                return out
            with self.conn, self.conn.cursor() as cur:
                jobs.save_checkpoint(
                    cur,
                    self.job_id,
                    {**work.position, "complete": False},
                    listed=work.listed,
                    published=sent + work.counted,
                )
                job = jobs.get(cur, self.job_id)
            out.listed += work.listed
            out.published += sent + work.counted
            out.pages += 1
            if self.on_page:
                self.on_page(job)
        with self.conn, self.conn.cursor() as cur:
            job = jobs.get(cur, self.job_id)
            jobs.save_checkpoint(cur, self.job_id, {**(job.checkpoint or {}), "complete": True})
            jobs.finish_if_complete(cur, self.job_id)
            out.state = jobs.state_of(cur, self.job_id) or "gone"
        return out

    def _publish(self, tasks: list[ObjectTask]) -> tuple[int, bool]:
        """Send tasks in chunks under the pacing: (the number sent, whether the job stopped
        first). A pause, here as between pages, waits: the publisher goes on after a resume,
        where it left, with the page's sent chunks counted once."""
        sent = 0
        step = self.pacing.chunk_size()
        for start in range(0, len(tasks), step):
            chunk = tasks[start : start + step]
            live = self.pacing.before(len(chunk), lambda: self.state() in ("running", "paused"))
            if not live or self._wait_while_paused() != "running":
                return sent, True
            self._send(chunk)
            sent += len(chunk)
            if sent < len(tasks):  # the page's checkpoint counts the last chunk
                with self.conn, self.conn.cursor() as cur:
                    jobs.note_sending(cur, self.job_id, sent)
                    job = jobs.get(cur, self.job_id) if self.on_page else None
                if self.on_page and job is not None:
                    self.on_page(job)
        return sent, False

    def _send(self, chunk: list[ObjectTask]) -> None:
        todo = chunk
        for attempt in range(self.attempts):
            errors = self.publisher.publish([(TAG_TASK, t) for t in todo])
            todo = [t for t, e in zip(todo, errors) if e is not None]
            if not todo:
                return
            first = next(e for e in errors if e is not None)
            log.warning(
                "publish failed for %d task(s), attempt %d: %s", len(todo), attempt + 1, first
            )
            time.sleep(min(30.0, 0.5 * 2**attempt))
        raise PublishFailed(
            f"the broker refused {len(todo)} task(s) after {self.attempts} attempts; "
            f"run the same backfill again to resume job {self.job_id} from its checkpoint"
        )
