"""Fleet re-tag: a release re-match (job kind ``retag``) or a scene-map re-file (``remap``)
split into photo-id ranges that any number of maintenance workers run.

- Planning writes one ``jobs`` row and one ``retag_chunks`` row per range (after_id, last_id]
  in one transaction; the last range is open-ended, so photos written later are covered too.
- A chunk runs in one transaction: lock its row, re-match (or re-file) its photos, mark it
  done with its photo count. A chunk already done is skipped, so a redelivered or
  republished task changes nothing; a worker killed mid-chunk leaves the row pending and the
  writes rolled back. The job's ``done`` is then set to the sum over its done chunks.
- Closing the job takes the job's row lock after the chunk commits: the one transaction that
  finds every chunk done and the job still running marks the release ready, activates it and
  moves the job to done, together. Any other finds the job done and does nothing, so the
  release activates exactly once whichever worker writes the last chunk.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

import psycopg2.errors
from psycopg2.extras import execute_values

from models.landmarks import LandmarkIndex
from models.scenes import SceneMap, load_categories
from workers import jobs, pgcopy
from workers.migrate import hold_schema
from workers.releases import ReleaseRefused, activate_in, load_index
from workers.retag import MATCHES_INSERT, MATCHES_TEMPLATE, RERUN, refile

log = logging.getLogger("sightline.retag")

KINDS = ("retag", "remap")
OPEN_END = 2**63 - 1  # the last range's bound: photos written after planning are covered
_RETRIES = 5  # serialisation conflicts with the tagging workers: run the chunk again

_indexes: dict[str, tuple[LandmarkIndex, str]] = {}  # release -> (index, model version)
_indexes_lock = threading.Lock()


@dataclass(frozen=True)
class FleetPlan:
    """A planned (or resumed) fleet job: which chunks still need a task."""

    job_id: int
    kind: str
    chunks: int
    pending: list[int]
    photos: int
    resumed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job_id,
            "kind": self.kind,
            "chunks": self.chunks,
            "pending": len(self.pending),
            "photos": self.photos,
            "resumed": self.resumed,
        }


@dataclass(frozen=True)
class ChunkOutcome:
    """What one chunk task did: ``done``, ``skipped`` (already done, or the job is final),
    ``paused`` (try again later) or ``failed`` (the job is failed with the reason)."""

    outcome: str
    photos: int = 0
    matches: int = 0
    closed: bool = False  # this call closed the job (and activated its release)


# ------------------------------------------------------------------------------ planning
def _live_job(cur: Any, kind: str, key: str, value: str) -> tuple[int, str] | None:
    cur.execute(
        "SELECT id, state FROM jobs WHERE kind = %s AND params->>%s = %s "
        "AND state IN ('running', 'paused') ORDER BY id DESC LIMIT 1",
        (kind, key, value),
    )
    row = cur.fetchone()
    return (int(row[0]), row[1]) if row else None


def _bounds(cur: Any, where: str, params: tuple, chunk_size: int) -> tuple[list[int], int]:
    """Range bounds every ``chunk_size`` photos in id order, and the photo count."""
    cur.execute(
        f"SELECT id, n FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM photos "
        f"WHERE {where}) t WHERE n %% %s = 0 ORDER BY id",
        (*params, chunk_size),
    )
    cuts = [int(r[0]) for r in cur.fetchall()]
    cur.execute(f"SELECT count(*) FROM photos WHERE {where}", params)
    total = int(cur.fetchone()[0])
    return [0, *cuts, OPEN_END], total


def _insert_chunks(cur: Any, job_id: int, bounds: list[int]) -> list[int]:
    rows = [(job_id, i, lo, hi) for i, (lo, hi) in enumerate(itertools.pairwise(bounds))]
    execute_values(
        cur, "INSERT INTO retag_chunks (job_id, chunk, after_id, last_id) VALUES %s", rows
    )
    return [r[1] for r in rows]


def pending_chunks(cur: Any, job_id: int) -> list[int]:
    """Chunk numbers of the job not yet written."""
    cur.execute(
        "SELECT chunk FROM retag_chunks WHERE job_id = %s AND state = 'pending' ORDER BY chunk",
        (job_id,),
    )
    return [int(r[0]) for r in cur.fetchall()]


def _resume(cur: Any, kind: str, job_id: int, state: str) -> FleetPlan:
    if state == "paused":
        raise ReleaseRefused(f"{kind} job {job_id} is paused: `sightline jobs resume {job_id}`")
    job = jobs.get(cur, job_id)
    cur.execute("SELECT count(*) FROM retag_chunks WHERE job_id = %s", (job_id,))
    n = int(cur.fetchone()[0])
    return FleetPlan(job_id, kind, n, pending_chunks(cur, job_id), job.total or 0, True)


def plan_retag(
    conn: Any, version: str, *, chunk_size: int = 10_000, make_active: bool = True
) -> FleetPlan:
    """Plan (or find the live job of) a fleet re-match of ``version``; raises ReleaseRefused.

    The release becomes 'retagging' (an active one is re-matched in place, each chunk
    swapping its range atomically), as the in-process re-tag does.
    """
    if chunk_size < 1:
        raise ValueError("chunk size must be at least 1")
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT status, model_version, embedding_dim FROM releases WHERE version = %s "
            "FOR UPDATE",
            (version,),
        )
        row = cur.fetchone()
        if row is None:
            raise ReleaseRefused(f"no release {version!r} is imported")
        status, model_version, dim = row
        if status == "importing":
            raise ReleaseRefused(f"release {version} is still importing")
        live = _live_job(cur, "retag", "release", version)
        if live:
            return _resume(cur, "retag", *live)
        if status != "active":
            cur.execute(
                "UPDATE releases SET status = 'retagging', retag_cursor = 0 WHERE version = %s",
                (version,),
            )
        where = (
            "model_version = %s AND embedding IS NOT NULL AND status = 'tagged' "
            "AND vector_dims(embedding) = %s"
        )
        bounds, total = _bounds(cur, where, (model_version, dim), chunk_size)
        params = {
            "release": version,
            "chunk_size": chunk_size,
            "activate": make_active,
            "previous_status": status,  # what a cancelled or failed job gives back
        }
        job_id = jobs.create(cur, "retag", params, total=total)
        chunks = _insert_chunks(cur, job_id, bounds)
        jobs.add(cur, job_id, listed=total)
    return FleetPlan(job_id, "retag", len(chunks), chunks, total, False)


def plan_remap(
    conn: Any, scene_map: SceneMap, *, chunk_size: int = 10_000, k: int = 3
) -> FleetPlan:
    """Plan (or find the live job of) a fleet re-file of scene albums under ``scene_map``,
    at most ``k`` albums per photo by the map's thresholds (``SceneMap.file``).

    The map travels in the job's params (album per class, the sift classes, the thresholds),
    not in tasks. The caller installs the map in force first (workers/scenemaps.install), so
    new photos are filed by it while the chunks re-file the stored ones.
    """
    if chunk_size < 1:
        raise ValueError("chunk size must be at least 1")
    if k < 1:
        raise ValueError("albums per photo must be at least 1")
    params = {
        "albums_by_class": list(scene_map.albums_by_class),
        "excluded": sorted(scene_map.excluded),
        "thresholds": {a: float(t) for a, t in sorted(scene_map.thresholds.items())},
        "max_albums": k,
        "chunk_size": chunk_size,
    }
    digest = _map_digest(params)
    params["map_sha"] = digest
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('sightline.remap'))")
        live = _live_job(cur, "remap", "map_sha", digest)
        if live:
            return _resume(cur, "remap", *live)
        where = "scene_probs IS NOT NULL AND status = 'tagged'"
        bounds, total = _bounds(cur, where, (), chunk_size)
        job_id = jobs.create(cur, "remap", params, total=total)
        chunks = _insert_chunks(cur, job_id, bounds)
        jobs.add(cur, job_id, listed=total)
    return FleetPlan(job_id, "remap", len(chunks), chunks, total, False)


def _map_digest(params: dict[str, Any]) -> str:
    import hashlib
    import json

    body = [params["albums_by_class"], params["excluded"]]
    if params.get("thresholds") or params.get("max_albums", 3) != 3:
        body += [params.get("thresholds") or {}, params.get("max_albums", 3)]
    text = json.dumps(body, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scene_map_of(params: dict[str, Any]) -> SceneMap:
    """The scene map a remap job carries in its params."""
    categories = load_categories()
    albums = tuple(params["albums_by_class"])
    if len(albums) != len(categories):
        raise ReleaseRefused(f"remap job's map has {len(albums)} classes, not {len(categories)}")
    mapping = dict(zip(categories, albums))
    return SceneMap.from_albums(
        mapping,
        categories,
        excluded=frozenset(params.get("excluded", ())),
        thresholds=params.get("thresholds") or {},
    )


# ------------------------------------------------------------------------------ running
def _index(cur: Any, version: str) -> tuple[LandmarkIndex, str]:
    """A release's index, loaded once per process (a release's content never changes)."""
    with _indexes_lock:
        hit = _indexes.get(version)
    if hit is not None:
        return hit
    cur.execute(
        "SELECT embedding_dim, thresholds, model_version FROM releases WHERE version = %s",
        (version,),
    )
    row = cur.fetchone()
    if row is None:
        raise ReleaseRefused(f"no release {version!r} is imported")
    dim, thresholds, model_version = row
    loaded = (load_index(cur, version, dim, thresholds), model_version)
    with _indexes_lock:
        _indexes[version] = loaded
    return loaded


def run_chunk(conn: Any, job_id: int, chunk: int, *, worker: str = "") -> ChunkOutcome:
    """Run one chunk of a fleet job, then close the job if it was the last; idempotent.

    Raises psycopg2 errors for database faults (the caller retries the task); a chunk that
    cannot be done (a release deleted, probabilities of the wrong width, a job's params it
    cannot read, the task's time limit) fails the job with the reason in one line instead:
    a chunk left pending by a task that just ended would hold the job 'running' for ever.
    """
    for attempt in range(_RETRIES):
        try:
            outcome = _run(conn, job_id, chunk, worker)
            break
        except RERUN as exc:
            if attempt == _RETRIES - 1:
                raise
            log.info("job %s chunk %s conflicted (%s): running it again", job_id, chunk, exc)
        except psycopg2.Error:
            raise  # the database: the task retries it
        except ReleaseRefused as exc:
            _fail(conn, job_id, chunk, str(exc))
            return ChunkOutcome("failed")
        except Exception as exc:  # a bug or a time limit: the job says so, never hangs
            log.exception("job %s chunk %s raised", job_id, chunk)
            _fail(conn, job_id, chunk, f"{type(exc).__name__}: {exc}".strip().rstrip(":"))
            return ChunkOutcome("failed")
    if outcome.outcome in ("done", "skipped"):
        closed = close_if_complete(conn, job_id, worker=worker)
        return ChunkOutcome(outcome.outcome, outcome.photos, outcome.matches, closed)
    return outcome


def _fail(conn: Any, job_id: int, chunk: int, reason: str) -> None:
    """Move a live job to failed with ``chunk N: reason`` (one line)."""
    if conn.closed:
        return
    reason = " ".join(reason.split())
    with conn, conn.cursor() as cur:
        if jobs.state_of(cur, job_id) in ("running", "paused"):
            jobs.move(cur, job_id, "failed", error=f"chunk {chunk}: {reason}")
    log.error("job %s chunk %s failed: %s", job_id, chunk, reason)


def _run(conn: Any, job_id: int, chunk: int, worker: str) -> ChunkOutcome:
    with conn, conn.cursor() as cur:
        # Repeatable read: the delete sees the snapshot the read saw, so what a tagging worker
        # commits meanwhile for its own photos is not removed (a conflict aborts and reruns).
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        hold_schema(cur)  # before any table: an upgrade in progress finishes first
        cur.execute(
            "SELECT c.state, c.after_id, c.last_id, j.kind, j.params, j.state "
            "FROM retag_chunks c JOIN jobs j ON j.id = c.job_id "
            "WHERE c.job_id = %s AND c.chunk = %s FOR UPDATE OF c",
            (job_id, chunk),
        )
        row = cur.fetchone()
        if row is None:
            return ChunkOutcome("skipped")  # a job deleted after its tasks were published
        state, after, last, kind, params, job_state = row
        if state == "done" or job_state in jobs.FINAL:
            return ChunkOutcome("skipped")
        if job_state == "paused":
            return ChunkOutcome("paused")
        if kind == "retag":
            photos, matches = _rematch(cur, params["release"], after, last)
        elif kind == "remap":
            k = int(params.get("max_albums", 3))
            ids = refile(cur, scene_map_of(params), "id > %s AND id <= %s ORDER BY id",
                         (after, last), k)  # fmt: skip
            photos, matches = len(ids), 0
        else:
            raise ReleaseRefused(f"job {job_id} is a {kind} job, not one of {KINDS}")
        cur.execute(
            "UPDATE retag_chunks SET state = 'done', photos = %s, matches = %s, worker = %s, "
            "started_at = now(), done_at = clock_timestamp() WHERE job_id = %s AND chunk = %s",
            (photos, matches, worker or None, job_id, chunk),
        )
    with conn, conn.cursor() as cur:
        _sync_done(cur, job_id)
    return ChunkOutcome("done", photos, matches)


def _sync_done(cur: Any, job_id: int) -> None:
    """Set the job's ``done`` to the photos of its done chunks.

    Not an increment inside the chunk's transaction: two repeatable-read chunks updating one
    job row would abort each other and redo their whole chunk. A sum over the chunk rows is
    exact whenever it runs, so a worker killed between the two commits only delays it (the
    next chunk or the close sets it)."""
    cur.execute(
        "UPDATE jobs SET done = (SELECT coalesce(sum(photos), 0) FROM retag_chunks "
        "WHERE job_id = %s AND state = 'done'), updated_at = now() WHERE id = %s",
        (job_id, job_id),
    )


def _rematch(cur: Any, version: str, after: int, last: int) -> tuple[int, int]:
    index, model_version = _index(cur, version)
    query = cur.mogrify(
        "SELECT id, coalesce(gps_lat, 'NaN'::float8), coalesce(gps_lon, 'NaN'::float8), "
        "embedding FROM photos WHERE model_version = %s AND embedding IS NOT NULL "
        "AND status = 'tagged' AND vector_dims(embedding) = %s AND id > %s AND id <= %s "
        "ORDER BY model_version, id",
        (model_version, index.dim, after, last),
    ).decode()
    rows = pgcopy.copy_out(cur, query, index.dim, half=True)  # photos store halfvec (0012)
    m = index.match_arrays(rows.embeddings, rows.gps)
    # Album summaries (0012) once per chunk, locked in key order (no deadlock with workers).
    cur.execute("SELECT sightline_album_defer()")
    cur.execute(
        "DELETE FROM landmark_matches WHERE release = %s AND photo_id > %s AND photo_id <= %s",
        (version, after, last),
    )
    if len(m.photo):
        ids = index.landmark_ids
        execute_values(
            cur,
            MATCHES_INSERT,
            [
                (version, int(rows.ids[p]), ids[j], float(s))
                for p, j, s in zip(m.photo.tolist(), m.landmark.tolist(), m.score.tolist())
            ],
            template=MATCHES_TEMPLATE,
            page_size=5000,
        )
    cur.execute("SELECT sightline_album_flush()")
    return len(rows), len(m.photo)


def close_if_complete(conn: Any, job_id: int, *, worker: str = "") -> bool:
    """Close the job if every chunk is done: mark its release ready, activate it (when the
    job asks to) and move the job to done, in one transaction. True only for the one call
    that closed it: the job's row lock serialises racing workers, and the second finds the
    job no longer running."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT kind, params, state FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        row = cur.fetchone()
        if row is None or row[2] != "running":
            return False
        kind, params, _ = row
        cur.execute(
            "SELECT count(*) FROM retag_chunks WHERE job_id = %s AND state <> 'done'", (job_id,)
        )
        if cur.fetchone()[0]:
            return False
        _sync_done(cur, job_id)
        replaced = None
        if kind == "retag":
            version = params["release"]
            cur.execute(
                "UPDATE releases SET status = 'ready' WHERE version = %s AND status = 'retagging'",
                (version,),
            )
            if params.get("activate"):
                replaced = activate_in(cur, version)
        jobs.save_checkpoint(cur, job_id, {"closed_by": worker or None, "replaced": replaced})
        jobs.move(cur, job_id, "done")
    log.info("job %s (%s) complete, closed by %s", job_id, kind, worker or "this process")
    return True
