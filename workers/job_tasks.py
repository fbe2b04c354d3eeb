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


def job_states(cur: Any, tasks: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """The state of every job the batch's tasks belong to: one query, none without jobs."""
    ids = sorted({j for t in tasks if (j := job_of(t)) is not None})
    if not ids:
        return {}
    cur.execute("SELECT id, state FROM jobs WHERE id = ANY(%s::bigint[])", (ids,))
    return {int(i): s for i, s in cur.fetchall()}


def unchanged_keys(
    cur: Any, tasks: Sequence[Mapping[str, Any]], model_version: str
) -> set[tuple[str, str]]:
    """(bucket, key) of job tasks whose photo is tagged, unchanged and on ``model_version``:
    the no-op check, one query and no S3 call.

    Unchanged: same ETag (both known), and the same version id when both sides have one
    (ListObjectsV2 gives none). A task with ``force`` is never a no-op; nor is an upload's
    task, whose newer sequencer must be recorded to order later events.
    """
    todo = [t for t in tasks if job_of(t) is not None and not t.get("force") and t.get("etag")]
    if not todo:
        return set()
    cur.execute(
        "SELECT p.bucket, p.key FROM photos p JOIN unnest(%s::text[], %s::text[], %s::text[], "
        "%s::text[]) AS t(bucket, key, etag, version_id) "
        "ON p.bucket = t.bucket AND p.key = t.key "
        "WHERE p.status = 'tagged' AND p.etag = t.etag AND p.model_version = %s "
        "AND (t.version_id IS NULL OR p.version_id IS NULL OR p.version_id = t.version_id)",
        (
            [t["bucket"] for t in todo],
            [t["key"] for t in todo],
            [t["etag"] for t in todo],
            [t.get("version_id") for t in todo],
            model_version,
        ),
    )
    return {(b, k) for b, k in cur.fetchall()}


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
    for job, deltas in sorted(added.items()):
        jobs.add(cur, job, **deltas)
        jobs.finish_if_complete(cur, job)
    return added


def count_unmarked(cur: Any, tasks: Sequence[Mapping[str, Any]], counter: str) -> None:
    """Count tasks that leave no photo row (a cancelled job's skipped tasks) by job."""
    per_job = Counter(j for t in tasks if (j := job_of(t)) is not None)
    for job, n in sorted(per_job.items()):
        jobs.add(cur, job, **{counter: n})
