"""A worker's side of library jobs: the cheap no-op check, paused and cancelled jobs, and
counting each task's outcome against its job exactly once.

A task carries its job as the optional ``job_id`` of the task contract. Counting marks the
photo row with the job (``photos.job_id``, migration 0014) in the same transaction as the write
it counts, so a task delivered twice (a resumed backfill re-publishing its last page, a killed
worker's redelivery) is counted once, and the job's counts agree with the photos table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workers import jobs

# A task's final outcome -> the job counter it adds to. Retries are not final.
COUNTER_OF = {
    "tagged": "done",
    "failed": "failed",
    "gone": "failed",
    "skipped": "skipped",
    "stale": "skipped",
}


def job_of(task: Mapping[str, Any]) -> int | None:
    """The task's job id, or None for an upload's task (or a malformed id)."""
    raw = task.get("job_id")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    try:
        return int(raw)
    except ValueError:
        return None


@dataclass(frozen=True)
class Triage:
    """What one query says about a batch's tasks before anything is fetched."""

    stale: set[int]  # indexes a newer stored event already decided (sequencer guard)
    noop: set[int]  # indexes of library-job tasks whose photo needs nothing (see triage)
    states: dict[int, str]  # job id -> state, for the jobs the tasks belong to


def is_noop_candidate(task: Mapping[str, Any]) -> bool:
    """A task the no-op check may skip: a job's task, without ``force``, with an ETag. An
    upload's task never is: its newer sequencer must be recorded to order later events."""
    return job_of(task) is not None and not task.get("force") and bool(task.get("etag"))


def triage(
    cur: Any,
    tasks: Sequence[Mapping[str, Any]],
    model_version: str,
    *,
    scene_trained: bool,
    embedding_trained: bool,
) -> Triage:
    """The batch's stale tasks, library-job no-ops and job states: one query, no S3 call.

    Stale: the stored row's event is newer than the task's (``sightline_not_older``, each
    task judged by its own sequencer). No-op: a job task (``is_noop_candidate``) whose photo
    is tagged, unchanged (same ETag, and the same version id when both sides have one;
    ListObjectsV2 gives none) and tagged by this worker's model and heads: the same
    ``model_version`` and the same per-head provenance (``scene_trained``,
    ``embedding_trained``, migration 0010). A row that predates per-head provenance (NULL)
    is no proof of the heads that tagged it: never a no-op.

    Each task looks its row up by (bucket, key) on its own (a LATERAL lookup, so the plan is
    an index probe per task whatever the table's statistics say). Tasks must be storable
    (workers.pgtext.unstorable): NUL cannot travel in ``text[]``.
    """
    if not tasks:
        return Triage(set(), set(), {})
    cur.execute(
        "SELECT t.n - 1, "
        "coalesce(NOT sightline_not_older(t.seq, t.at, p.sequencer, p.event_time), false), "
        "coalesce(t.noop AND p.status = 'tagged' AND p.etag = t.etag "
        "AND p.model_version = %s AND p.scene_trained = %s AND p.embedding_trained = %s "
        "AND (t.version_id IS NULL OR p.version_id IS NULL OR p.version_id = t.version_id), "
        "false), t.job, j.state "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], "
        "%s::text[], %s::bigint[], %s::boolean[]) "
        "WITH ORDINALITY AS t(bucket, key, seq, at, etag, version_id, job, noop, n) "
        "LEFT JOIN LATERAL (SELECT p.sequencer, p.event_time, p.status, p.etag, "
        "p.version_id, p.model_version, p.scene_trained, p.embedding_trained FROM photos p "
        "WHERE p.bucket = t.bucket AND p.key = t.key LIMIT 1) AS p ON true "
        "LEFT JOIN jobs j ON j.id = t.job",
        (
            model_version,
            scene_trained,
            embedding_trained,
            [t["bucket"] for t in tasks],
            [t["key"] for t in tasks],
            [t.get("sequencer") for t in tasks],
            [t.get("event_time") for t in tasks],
            [t.get("etag") for t in tasks],
            [t.get("version_id") for t in tasks],
            [job_of(t) for t in tasks],
            [is_noop_candidate(t) for t in tasks],
        ),
    )
    out = Triage(set(), set(), {})
    for n, stale, noop, job, state in cur.fetchall():
        if stale:
            out.stale.add(int(n))
        if noop:
            out.noop.add(int(n))
        if job is not None and state is not None:
            out.states[int(job)] = state
    return out


def claim(cur: Any, tasks: Sequence[Mapping[str, Any]]) -> set[tuple[str, str, int]]:
    """Serialise job tasks on their keys for this transaction and return the (bucket, key,
    job) already counted against that job: duplicates, whose write is dropped.

    The advisory locks (taken in one order, so two batches cannot deadlock on them) make two
    copies of one task in concurrent batches write once, even when no row exists yet.
    """
    mine = [(t["bucket"], t["key"], j) for t in tasks if (j := job_of(t)) is not None]
    if not mine:
        return set()
    cur.execute(
        "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT "
        "hashtextextended(b || '/' || k, 0) AS h FROM unnest(%s::text[], %s::text[]) AS t(b, k) "
        "ORDER BY 1) AS s",
        ([b for b, _, _ in mine], [k for _, k, _ in mine]),
    )
    cur.execute(
        "SELECT p.bucket, p.key, p.job_id FROM photos p JOIN unnest(%s::text[], %s::text[], "
        "%s::bigint[]) AS t(bucket, key, job) ON p.bucket = t.bucket AND p.key = t.key "
        "AND p.job_id = t.job",
        ([b for b, _, _ in mine], [k for _, k, _ in mine], [j for _, _, j in mine]),
    )
    return {(b, k, int(j)) for b, k, j in cur.fetchall()}


def count(cur: Any, finished: Sequence[tuple[Mapping[str, Any], Any]]) -> dict[int, Counter]:
    """Count final outcomes against their jobs, once per photo and job; returns what was added.

    Call inside the transaction that wrote the photos. Marks each photo with its job and
    counts only the rows whose mark changed; then finishes a job whose listing is complete
    and whose every published task has an outcome.
    """
    outcome_of: dict[tuple[str, str, int], str] = {}
    for task, outcome in finished:
        job = job_of(task)
        if job is not None and isinstance(outcome, str) and outcome in COUNTER_OF:
            outcome_of.setdefault((task["bucket"], task["key"], job), outcome)
    if not outcome_of:
        return {}
    keys = list(outcome_of)
    cur.execute(
        "UPDATE photos p SET job_id = t.job FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
        "AS t(bucket, key, job) WHERE p.bucket = t.bucket AND p.key = t.key "
        "AND p.job_id IS DISTINCT FROM t.job RETURNING p.bucket, p.key, t.job",
        ([b for b, _, _ in keys], [k for _, k, _ in keys], [j for _, _, j in keys]),
    )
    added: dict[int, Counter] = {}
    for b, k, j in cur.fetchall():
        added.setdefault(int(j), Counter())[COUNTER_OF[outcome_of[(b, k, int(j))]]] += 1
    for job, deltas in sorted(added.items()):  # one lock order for concurrent batches
        if jobs.add(cur, job, **deltas):
            jobs.finish_if_complete(cur, job)
    return added


def count_unmarked(cur: Any, tasks: Sequence[Mapping[str, Any]], counter: str) -> None:
    """Count tasks that leave no photo row (a cancelled job's skipped tasks, a refused write)
    by job; finishes a job these counts complete."""
    per_job = Counter(j for t in tasks if (j := job_of(t)) is not None)
    for job, n in sorted(per_job.items()):
        if jobs.add(cur, job, **{counter: n}):
            jobs.finish_if_complete(cur, job)


def count_refused(cur: Any, tasks: Sequence[Mapping[str, Any]]) -> None:
    """Count as failed the job tasks whose write the database refused and that have no photo
    row to carry the job's mark (``count`` marks and counts the others), so a job with a
    refused photo still reaches its end. A redelivered copy of such a task counts again:
    nothing is stored to tell it from the first."""
    mine = [t for t in tasks if job_of(t) is not None]
    if not mine:
        return
    cur.execute(
        "SELECT p.bucket, p.key FROM photos p JOIN unnest(%s::text[], %s::text[]) AS t(bucket, "
        "key) ON p.bucket = t.bucket AND p.key = t.key",
        ([t["bucket"] for t in mine], [t["key"] for t in mine]),
    )
    present = set(cur.fetchall())
    count_unmarked(cur, [t for t in mine if (t["bucket"], t["key"]) not in present], "failed")
