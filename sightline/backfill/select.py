"""What a backfill publishes: listed objects become the tasks an upload would make, then the
selection keeps those that need work.

Selections: ``missing`` (no photo row, or the ETag or version differs from the stored one),
``all`` (every object, re-tagged even when unchanged), ``stale-model`` (tagged by another
model version) and ``failed`` (``--failed-kind`` transient: parked after retries; decode: the
photo itself could not be read; all). A photo this job already counted (before a kill) is
counted as published again but not re-sent, so the job's counts stay exact.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from handlers.contract import ObjectTask
from handlers.core import Action
from handlers.events import EventError, object_event
from handlers.rules import Exclusions, OwnerRule, skip_reason
from sightline.backfill.sources import ListedObject

log = logging.getLogger("sightline.backfill")

SELECTIONS = ("missing", "all", "stale-model", "failed")
FAILED_KINDS = ("transient", "decode", "all")
# What a parked photo's error starts with (workers.runtime.WorkerRuntime.park).
PARKED_PREFIX = "gave up after retries:"
# Rows --missing treats as absent: nothing usable is stored for the object as it is now.
_ABSENT = ("deleted", "gone", "pending")


@dataclass(frozen=True)
class Work:
    """One page of a backfill: what it listed, what to publish, where it ends."""

    listed: int
    tasks: list[ObjectTask]
    counted: int  # already counted against this job before a resume: published, not re-sent
    position: dict[str, Any]


def to_tasks(
    objects: Sequence[ListedObject],
    owners: OwnerRule,
    exclude: Exclusions,
    *,
    job_id: int,
    force: bool = False,
) -> list[ObjectTask]:
    """The tasks an upload of each object would make (images only, owner from the key,
    SIGHTLINE_EXCLUDE honoured), carrying the job id; other objects are dropped, and one the
    handler's rules refuse (a key past S3's 1,024 bytes in an inventory) with a warning."""
    tasks = []
    for o in objects:
        try:
            ev = object_event(
                kind="created",
                bucket=o.bucket,
                raw_key=o.key,
                url_encoded=False,  # listings and inventory readers hand over decoded keys
                version_id=o.version_id,
                etag=o.etag,
                size=o.size,
                event_time=o.last_modified,  # no sequencer: ordered by the object's time
                event_name="Backfill",
            )
        except EventError as exc:  # one bad row never stops the job
            log.warning("skipped an object of s3://%s: %s", o.bucket, exc)
            continue
        if skip_reason(ev, exclude):
            continue
        owner = owners.owner_of(ev.key)
        if owner is None:
            continue
        task = Action("tag", event=ev, owner=owner).task()
        task["job_id"] = job_id
        if force:
            task["force"] = True
        tasks.append(task)
    return tasks


def select_listed(
    cur: Any, tasks: Sequence[ObjectTask], selection: str, job_id: int
) -> tuple[list[ObjectTask], int]:
    """(tasks to publish, tasks this job already counted) for ``missing`` or ``all``."""
    if not tasks:
        return [], 0
    cur.execute(
        "SELECT p.bucket, p.key, p.etag, p.version_id, p.status, p.job_id FROM photos p "
        "JOIN unnest(%s::text[], %s::text[]) AS t(bucket, key) "
        "ON p.bucket = t.bucket AND p.key = t.key",
        ([t["bucket"] for t in tasks], [t["key"] for t in tasks]),
    )
    stored = {(b, k): (etag, ver, status, job) for b, k, etag, ver, status, job in cur.fetchall()}
    send, counted = [], 0
    for t in tasks:
        row = stored.get((t["bucket"], t["key"]))
        if row is not None and row[3] == job_id:
            counted += 1
        elif selection == "all" or row is None or _changed(t, row):
            send.append(t)
    return send, counted


def _changed(task: ObjectTask, row: tuple[Any, ...]) -> bool:
    etag, version, status, _ = row
    if status in _ABSENT:
        return True
    if etag is None or task["etag"] is None or etag != task["etag"]:
        return True  # an unknown ETag cannot prove the object unchanged
    return bool(version and task["version_id"] and version != task["version_id"])


def photo_pages(
    cur: Any,
    *,
    bucket: str,
    prefix: str,
    selection: str,
    job_id: int,
    model_version: str | None = None,
    failed_kind: str = "all",
    position: dict[str, Any] | None = None,
    page_size: int = 1000,
    exclude: Exclusions | None = None,
) -> Iterator[Work]:
    """``stale-model`` and ``failed`` work from the photos table, keyset-paged by photo id.

    Each task carries the photo's stored identity (sequencer, event time), so its write
    passes the sequencer guard exactly when no newer event has arrived since. Keys
    ``exclude`` matches (SIGHTLINE_EXCLUDE) are left out, as listings leave them out.
    """
    if selection == "stale-model":
        if not model_version:
            raise ValueError("--stale-model needs the current model version")
        where, args = "status = 'tagged' AND model_version IS DISTINCT FROM %s", [model_version]
    elif selection == "failed":
        where, args = "status = 'failed'", []
        if failed_kind == "transient":
            where += " AND starts_with(coalesce(error, ''), %s)"
            args.append(PARKED_PREFIX)
        elif failed_kind == "decode":
            where += " AND NOT starts_with(coalesce(error, ''), %s)"
            args.append(PARKED_PREFIX)
    else:
        raise ValueError(f"selection {selection!r} does not read the photos table")
    after = int((position or {}).get("after_id", 0))
    while True:
        cur.execute(
            "SELECT id, owner, bucket, key, version_id, etag, size, sequencer, event_time, "
            f"job_id FROM photos WHERE bucket = %s AND starts_with(key, %s) AND id > %s "
            f"AND (({where}) OR job_id = %s) ORDER BY id LIMIT %s",
            [bucket, prefix, after, *args, job_id, page_size],
        )
        rows = cur.fetchall()
        if not rows:
            return
        tasks: list[ObjectTask] = []
        counted = 0
        for _id, owner, b, key, version, etag, size, seq, at, job in rows:
            if job == job_id:
                counted += 1
                continue
            if exclude is not None and exclude.match(key):
                continue
            task = ObjectTask(
                bucket=b,
                key=key,
                version_id=version,
                etag=etag,
                size=size,
                sequencer=seq,
                event_time=at.isoformat() if at else None,
                owner=owner,
            )
            task["job_id"] = job_id
            tasks.append(task)
        after = int(rows[-1][0])
        yield Work(len(rows), tasks, counted, {"after_id": after})
        if len(rows) < page_size:
            return


def _digest(bucket: str, key: str) -> bytes:
    return hashlib.blake2b(
        f"{bucket}\0{key}".encode(errors="surrogatepass"), digest_size=16
    ).digest()


def listed_work(
    pages: Iterator[Any],
    cur_of: Callable[[], Any],
    *,
    selection: str,
    owners: OwnerRule,
    exclude: Exclusions,
    job_id: int,
) -> Iterator[Work]:
    """Listing or inventory pages -> Work for ``missing`` or ``all``. ``cur_of`` gives a
    cursor context (one short transaction per page).

    A key listed again in the same run (an inventory's data files repeating rows) is
    dropped: the workers count a photo once per job, so a second task for it would leave the
    job's published count above its outcomes for good. The run remembers a 16-byte digest
    per key it published, about 100 bytes each (100 MB for a million keys); a listing never
    repeats a key, so only malformed inventories pay for it.
    """
    seen: set[bytes] = set()
    for page in pages:
        tasks = []
        for t in to_tasks(page.objects, owners, exclude, job_id=job_id, force=selection == "all"):
            digest = _digest(t["bucket"], t["key"])
            if digest not in seen:
                seen.add(digest)
                tasks.append(t)
        with cur_of() as cur:
            send, counted = select_listed(cur, tasks, selection, job_id)
        yield Work(len(page.objects), send, counted, page.position)
