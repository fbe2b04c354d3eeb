"""Library jobs as rows of the ``jobs`` table: create, count progress, pause, resume, cancel.

A job is a long operation run by the fleet (a bucket backfill, a re-tag in chunks). The process
that starts it writes the row; publishers add to ``listed``/``published``; workers add to
``done``/``failed``/``skipped`` as they write, so the counts say what reached Postgres. States:
running <-> paused, then one of done, failed, cancelled (final). Publishers and workers check
the state between batches, which is how pause and cancel reach them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

STATES = ("running", "paused", "done", "failed", "cancelled")
FINAL = frozenset({"done", "failed", "cancelled"})
COUNTERS = ("listed", "published", "done", "failed", "skipped")
# Allowed moves of `sightline jobs pause|resume|cancel` and of the job's own runner.
_MOVES = {
    "running": {"paused", "done", "failed", "cancelled"},
    "paused": {"running", "cancelled"},
}


class JobError(ValueError):
    """A job that does not exist or a move its state does not allow, in one line."""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    params: dict[str, Any]
    state: str
    total: int | None
    listed: int
    published: int
    done: int
    failed: int
    skipped: int
    checkpoint: Any
    error: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    # A live backfill whose listing is not done and that no backfill process publishes (its
    # session lock, PUBLISHER_LOCK, is free): killed, or its terminal closed. Running the
    # same command again resumes it. Read from pg_locks with the row, not a column.
    publisher_gone: bool = False

    @property
    def finished(self) -> int:
        """Tasks that reached an outcome: done, failed or skipped."""
        return self.done + self.failed + self.skipped

    def rate_per_s(self) -> float | None:
        """Outcomes per second since the start; None before the first one."""
        end = self.finished_at or self.updated_at
        seconds = (end - self.started_at).total_seconds()
        return self.finished / seconds if self.finished and seconds > 0 else None

    @property
    def source_done(self) -> bool:
        """The source is exhausted (``checkpoint.complete``): nothing more will be published."""
        return isinstance(self.checkpoint, dict) and self.checkpoint.get("complete") is True

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far, against ``total``, or against what was published
        once the source is exhausted; None when unknown (no outcome yet, or a listing not yet
        done: against what was published so far it read 0 while workers kept up with the
        publisher) and for a job that is not running (paused, done, failed or cancelled:
        nothing is left to wait for, or nothing moves it)."""
        if self.state != "running":
            return None
        rate = self.rate_per_s()
        if self.total is not None:
            target = self.total
        elif self.source_done:
            target = self.published
        else:
            return None
        if not rate:
            return None
        return max(0.0, (target - self.finished) / rate)

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("started_at", "updated_at", "finished_at"):
            out[name] = out[name].isoformat() if out[name] else None
        out["rate_per_s"] = self.rate_per_s()
        out["eta_s"] = self.eta_s()
        return out


# The session advisory lock (PUBLISHER_LOCK, job id) a backfill holds while it publishes.
PUBLISHER_LOCK = 0x5167
_PUBLISHER_GONE = (
    "(kind = 'backfill' AND state IN ('running', 'paused') "
    "AND NOT coalesce(checkpoint @> '{\"complete\": true}', false) "
    "AND NOT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    f"AND l.classid = {PUBLISHER_LOCK} AND l.objid = jobs.id::oid AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())))"
)
# published as it stands: the column (exact at each page's checkpoint) plus what the page
# being published has sent so far (``note_sending``), so progress and ETA move with the page
_PUBLISHED = (
    "published + CASE WHEN jsonb_typeof(checkpoint -> 'sending') = 'number' "
    "THEN (checkpoint ->> 'sending')::bigint ELSE 0 END"
)
_COLUMNS = ", ".join(
    _PUBLISHED if n == "published" else n for n in Job.__dataclass_fields__ if n != "publisher_gone"
)
_COLUMNS += f", {_PUBLISHER_GONE}"


def create(cur: Any, kind: str, params: dict[str, Any], *, total: int | None = None) -> int:
    """Insert a running job; returns its id."""
    cur.execute(
        "INSERT INTO jobs (kind, params, total) VALUES (%s, %s::jsonb, %s) RETURNING id",
        (kind, json.dumps(params), total),
    )
    return int(cur.fetchone()[0])


def get(cur: Any, job_id: int) -> Job:
    """One job; raises JobError if there is none with that id."""
    cur.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
    row = cur.fetchone()
    if row is None:
        raise JobError(f"no job {job_id}")
    return Job(*row)


def list_jobs(cur: Any, *, live_only: bool = False, limit: int = 50) -> list[Job]:
    """The newest jobs first; only running and paused ones with ``live_only``."""
    where = "WHERE state IN ('running', 'paused')" if live_only else ""
    cur.execute(f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY id DESC LIMIT %s", (limit,))
    return [Job(*row) for row in cur.fetchall()]


def add(cur: Any, job_id: int, **deltas: int) -> bool:
    """Add to the job's counters (``listed``, ``published``, ``done``, ``failed``, ``skipped``)
    in one statement; the caller's transaction makes it atomic with the writes it counts.

    True when the job, as these counts leave it, may finish (running, its source exhausted,
    every published task with an outcome): worth a ``finish_if_complete``, which decides.
    """
    unknown = set(deltas) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown job counters: {sorted(unknown)}")
    deltas = {k: int(v) for k, v in deltas.items() if v}
    if not deltas:
        return False
    sets = ", ".join(f"{k} = {k} + %({k})s" for k in deltas)
    cur.execute(f"UPDATE jobs SET {sets}, updated_at = now() WHERE id = %(id)s "
                "RETURNING state = 'running' AND checkpoint @> '{\"complete\": true}' "
                "AND done + failed + skipped >= published",
                {**deltas, "id": job_id})  # fmt: skip
    row = cur.fetchone()
    return bool(row and row[0])


def save_checkpoint(cur: Any, job_id: int, checkpoint: Any, **deltas: int) -> None:
    """Store where a killed job resumes, with the counters that go with it, in one statement."""
    add(cur, job_id, **deltas)
    cur.execute(
        "UPDATE jobs SET checkpoint = %s::jsonb, updated_at = now() WHERE id = %s",
        (json.dumps(checkpoint), job_id),
    )


def note_sending(cur: Any, job_id: int, sent: int) -> None:
    """Record that the page being published has sent ``sent`` tasks so far (``published``
    reads them; the page's ``save_checkpoint`` replaces them with its exact count). A kill
    leaves them standing, which is what went out; the resumed run sets them to 0 first."""
    cur.execute(
        "UPDATE jobs SET checkpoint = jsonb_set(CASE jsonb_typeof(checkpoint) WHEN 'object' "
        "THEN checkpoint ELSE '{}'::jsonb END, '{sending}', to_jsonb(%s::bigint)), "
        "updated_at = now() WHERE id = %s",
        (sent, job_id),
    )


def move(cur: Any, job_id: int, state: str, *, error: str | None = None) -> Job:
    """Change the job's state if the move is allowed; returns the job as it now is.

    Raises JobError for an unknown job, an unknown state or a move from a final state.
    """
    if state not in STATES:
        raise JobError(f"unknown job state {state!r} (one of {', '.join(STATES)})")
    job = get(cur, job_id)
    if state == job.state:
        return job
    if state not in _MOVES.get(job.state, set()):
        raise JobError(f"job {job_id} is {job.state}; it cannot become {state}")
    cur.execute(
        "UPDATE jobs SET state = %s, error = COALESCE(%s, error), updated_at = now(), "
        "finished_at = CASE WHEN %s THEN now() END WHERE id = %s AND state = %s",
        (state, error, state in FINAL, job_id, job.state),
    )
    if cur.rowcount and job.kind == "retag" and state in ("cancelled", "failed"):
        # A fleet re-tag that will not finish gives its release back the status it had:
        # left 'retagging', workers would match new uploads against it for ever.
        cur.execute(
            "UPDATE releases SET status = %s WHERE version = %s AND status = 'retagging'",
            (job.params.get("previous_status", "imported"), job.params.get("release")),
        )
    # rowcount 0: another process moved it first; either way report what it is now
    return get(cur, job_id)


def state_of(cur: Any, job_id: int) -> str | None:
    """The job's state, cheaply, for publishers and workers checking between batches."""
    cur.execute("SELECT state FROM jobs WHERE id = %s", (job_id,))
    row = cur.fetchone()
    return row[0] if row else None


def finish_if_complete(cur: Any, job_id: int) -> bool:
    """Move a running job to done once its source is exhausted (``checkpoint.complete``) and
    every published task has an outcome; True when this call finished it.

    Both the publisher (after its last page) and the workers (after counting) call it, so the
    job finishes whichever comes last.
    """
    cur.execute(
        "UPDATE jobs SET state = 'done', updated_at = now(), finished_at = now() "
        "WHERE id = %s AND state = 'running' AND checkpoint @> '{\"complete\": true}' "
        "AND done + failed + skipped >= published",
        (job_id,),
    )
    return cur.rowcount == 1
