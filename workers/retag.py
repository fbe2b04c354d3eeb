"""Re-tag stored photos without the network: landmark matches for a release, album labels
for a new scene map.

A landmark re-tag streams embeddings in photo-id order by binary COPY; each batch
replaces the release's matches in its id range and advances ``releases.retag_cursor`` in
the same transaction, so a killed run resumes where the last commit left it and a batch
done twice gives the same rows. The release becomes 'ready' only when every batch is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg2.errors
from psycopg2.extras import execute_values

from models.landmarks import LandmarkIndex
from models.scenes import SceneMap
from workers import pgcopy
from workers.releases import ReleaseRefused, activate, as_array, load_index

# What a concurrent writer makes a re-tag or re-file batch meet; the batch runs again (its
# rows are replaced whole, so a rerun repeats work, never adds to it).
RERUN = (
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.DeadlockDetected,
    psycopg2.errors.UniqueViolation,
)

# A re-tag's matches, (release, photo id, landmark id, score) per row through execute_values,
# each with its photo's owner: the partition key (0017) must be known when the row is routed.
MATCHES_INSERT = (
    "INSERT INTO landmark_matches (release, photo_id, landmark_id, score, owner) "
    "SELECT v.release, v.photo_id, v.landmark_id, v.score, p.owner "
    "FROM (VALUES %s) AS v(release, photo_id, landmark_id, score) "
    "JOIN photos p ON p.id = v.photo_id"
)
MATCHES_TEMPLATE = "(%s, %s::bigint, %s, %s::real)"

_RESUMABLE = ("retagging",)
_STARTABLE = ("imported", "ready", "retired", "active")


@dataclass
class RetagSummary:
    release: str
    photos: int
    matches: int
    resumed_from: int
    seconds: float
    status: str
    replaced: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "photos": self.photos,
            "matches": self.matches,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 3),
            "photos_per_s": round(self.photos / self.seconds, 1) if self.seconds else None,
            "status": self.status,
            "replaced": self.replaced,
        }


def _begin(conn: Any, version: str) -> tuple[LandmarkIndex, str, int, str]:
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT status, retag_cursor, model_version, embedding_dim, thresholds "
            "FROM releases WHERE version = %s FOR UPDATE",
            (version,),
        )
        row = cur.fetchone()
        if row is None:
            raise ReleaseRefused(f"no release {version!r} is imported")
        status, cursor, model_version, dim, thresholds = row
        if status == "importing":
            raise ReleaseRefused(f"release {version} is still importing")
        if status not in _RESUMABLE:
            cursor = 0
            # An active release is re-matched in place: each batch swaps atomically.
            if status != "active":
                status = "retagging"
            cur.execute(
                "UPDATE releases SET status = %s, retag_cursor = 0 WHERE version = %s",
                (status, version),
            )
        index = load_index(cur, version, dim, thresholds)
    return index, model_version, int(cursor), status


def _select(cur: Any, model_version: str, dim: int, after: int, limit: int) -> str:
    return cur.mogrify(
        "SELECT id, coalesce(gps_lat, 'NaN'::float8), coalesce(gps_lon, 'NaN'::float8), "
        "embedding FROM photos WHERE model_version = %s AND embedding IS NOT NULL "
        "AND status = 'tagged' AND vector_dims(embedding) = %s AND id > %s "
        "ORDER BY model_version, id LIMIT %s",
        (model_version, dim, after, limit),
    ).decode()


def retag_batch(
    conn: Any, version: str, index: LandmarkIndex, model_version: str, after: int, limit: int
) -> tuple[int, int, int]:
    """One batch in one transaction; returns (last photo id, photos, matches).

    Repeatable read: the delete sees the same snapshot as the read, so matches a worker
    commits meanwhile for newer photos are not removed; a conflicting concurrent write to
    the same rows aborts the batch, which is then simply run again.
    """
    for attempt in range(5):
        try:
            return _batch(conn, version, index, model_version, after, limit)
        except RERUN:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _batch(
    conn: Any, version: str, index: LandmarkIndex, model_version: str, after: int, limit: int
) -> tuple[int, int, int]:
    with conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # Album summaries once per batch, locked in key order (no deadlock with workers).
        cur.execute("SELECT sightline_album_defer()")
        select = _select(cur, model_version, index.dim, after, limit)
        rows = pgcopy.copy_out(cur, select, index.dim, half=True)  # photos store halfvec
        last = int(rows.ids[-1]) if len(rows) == limit else 2**63 - 1  # the end: close the range
        m = index.match_arrays(rows.embeddings, rows.gps)
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
        cur.execute("UPDATE releases SET retag_cursor = %s WHERE version = %s", (last, version))
    return last, len(rows), len(m.photo)


def retag_release(
    conn: Any,
    version: str,
    *,
    batch_size: int = 20_000,
    progress: bool = True,
    make_active: bool = True,
) -> RetagSummary:
    """Re-match every stored embedding of the release's model against it (resumable)."""
    from tqdm import tqdm

    started = time.perf_counter()
    index, model_version, cursor, status = _begin(conn, version)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM photos WHERE model_version = %s AND embedding IS NOT NULL "
            "AND status = 'tagged' AND id > %s",
            (model_version, cursor),
        )
        total = cur.fetchone()[0]
    resumed_from, photos, matches = cursor, 0, 0
    with tqdm(total=total, unit="photo", desc=f"retag {version}", disable=not progress) as bar:
        while cursor < 2**63 - 1:
            cursor, n, k = retag_batch(conn, version, index, model_version, cursor, batch_size)
            photos, matches = photos + n, matches + k
            bar.update(n)
    with conn, conn.cursor() as cur:
        if status != "active":
            cur.execute(
                "UPDATE releases SET status = 'ready' WHERE version = %s AND status = 'retagging'",
                (version,),
            )
            status = "ready"
    replaced = None
    if make_active and status == "ready":
        replaced = activate(conn, version)
        status = "active"
    return RetagSummary(
        version, photos, matches, resumed_from, time.perf_counter() - started, status, replaced
    )


def retag_scenes(
    conn: Any, scene_map: SceneMap, *, batch_size: int = 5_000, progress: bool = True, k: int = 3
) -> int:
    """Re-file every tagged photo's scene albums under a new map from its stored probabilities,
    by the map's filing rule (thresholds, at most ``k`` albums; see ``SceneMap.file``).

    Each batch replaces its photos' album rows in one transaction, so a re-run after a
    kill only repeats work; returns the photos re-filed.
    """
    from tqdm import tqdm

    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM photos WHERE scene_probs IS NOT NULL AND status = 'tagged'"
        )
        total = cur.fetchone()[0]
    after, done = 0, 0
    with tqdm(total=total, unit="photo", desc="scene map", disable=not progress) as bar:
        while True:
            ids = _refile_retried(conn, scene_map, after, batch_size, k)
            if not ids:
                break
            after, done = ids[-1], done + len(ids)
            bar.update(len(ids))
    return done


def _refile_retried(conn: Any, scene_map: SceneMap, after: int, limit: int, k: int) -> list[int]:
    """One re-file batch (``_refile_batch``), run again when a concurrent write conflicts."""
    for attempt in range(5):
        try:
            return _refile_batch(conn, scene_map, after, limit, k)
        except RERUN:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _refile_batch(conn: Any, scene_map: SceneMap, after: int, limit: int, k: int) -> list[int]:
    """Re-file the next ``limit`` tagged photos after id ``after`` in one transaction; their ids.

    Repeatable read, as the landmark batches: a worker that rewrites or deletes one of these
    photos after the read makes the delete of its album rows a serialization failure (the
    batch reruns and reads the new version), where read committed deleted the worker's new
    rows and filed the photo by its old probabilities, or filed a deleted photo again.
    """
    with conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return refile(cur, scene_map, "id > %s ORDER BY id LIMIT %s", (after, limit), k)


def refile(cur: Any, scene_map: SceneMap, where: str, params: tuple, k: int) -> list[int]:
    """Replace the album rows of the tagged photos ``where`` selects (an id range, in id
    order) by the map's filing of their stored probabilities; the ids re-filed. Owner, sort
    key and trained flag go with each album row (membership). Call in a repeatable-read
    transaction (``_refile_batch``, the fleet's chunks). Raises ReleaseRefused when the
    stored probabilities are not the map's classes."""
    cur.execute(
        # Only tagged photos are album members (a failed or deleted one has none).
        "SELECT id, scene_probs, owner, "
        "sightline_sort_at(taken_at, taken_at_local, event_time, created_at), "
        "coalesce(model_trained, false) FROM photos WHERE scene_probs IS NOT NULL "
        f"AND status = 'tagged' AND {where}",
        params,
    )
    got = cur.fetchall()
    if not got:
        return []
    probs_rows = [as_array(r[1]) for r in got]  # halfvec -> float32
    n_classes = len(scene_map.categories)
    if any(len(p) != n_classes for p in probs_rows):
        raise ReleaseRefused(
            f"stored scene probabilities do not have the map's {n_classes} classes"
        )
    ids = [r[0] for r in got]
    # As at serving: the map's sift classes get nothing, the rest sum to 1.
    albums = scene_map.file(scene_map.renormalise(np.stack(probs_rows)), k=k)
    cur.execute("SELECT sightline_album_defer()")  # summaries once, in key order
    cur.execute("DELETE FROM photo_albums WHERE photo_id = ANY(%s)", (ids,))
    execute_values(
        cur,
        "INSERT INTO photo_albums (photo_id, rank, album, score, owner, sort_at, trained) "
        "VALUES %s",
        [
            (row[0], r + 1, a, sc, row[2], row[3], row[4])
            for row, al in zip(got, albums)
            for r, (a, sc) in enumerate(al)
        ],
        page_size=5000,
    )
    cur.execute("SELECT sightline_album_flush()")
    return ids
