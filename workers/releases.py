"""Landmark releases in Postgres: import a release file, switch albums to it atomically,
and load the live ones for matching (kept for a while, so a batch costs no query).

Lifecycle: imported -> retagging -> ready -> active -> retired. The worker matches new
photos against active, retagging and ready releases, so a release being re-tagged misses
no upload. One release per model version can be active (model generations): album functions
read each photo's matches from the active release of that photo's model version.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg2.extras import execute_values

from models.landmarks import LandmarkIndex, Thresholds
from models.release import Release, ReleaseError, refuse_untrained_embeddings
from workers import pgcopy

log = logging.getLogger("sightline.worker")

RELEASE_TTL_S = 30.0  # how long a worker trusts its view of the live releases


class ReleaseRefused(ValueError):
    """A release operation refused, with the reason in one line."""


def stored_models(cur: Any) -> dict[str, int]:
    """Model version -> embedding width of the stored photos (a loose index scan)."""
    cur.execute(
        """
        WITH RECURSIVE mv AS (
            (SELECT model_version FROM photos
             WHERE embedding IS NOT NULL AND model_version IS NOT NULL
             ORDER BY model_version LIMIT 1)
            UNION ALL
            SELECT (SELECT p.model_version FROM photos p
                    WHERE p.embedding IS NOT NULL AND p.model_version > mv.model_version
                    ORDER BY p.model_version LIMIT 1)
            FROM mv WHERE mv.model_version IS NOT NULL
        )
        SELECT model_version FROM mv WHERE model_version IS NOT NULL
        """
    )
    out = {}
    for (mv,) in cur.fetchall():
        cur.execute(
            "SELECT vector_dims(embedding) FROM photos "
            "WHERE model_version = %s AND embedding IS NOT NULL LIMIT 1",
            (mv,),
        )
        out[mv] = cur.fetchone()[0]
    return out


def check_compatible(cur: Any, model_version: str, dim: int, *, new_model: bool = False) -> None:
    """Refuse a release whose model version or width fits none of the stored embeddings.

    ``new_model``: the release is for weights about to be deployed (a model switch), so no
    stored photo has its model version yet; one that some photos have is still checked.
    """
    stored = stored_models(cur)
    if not stored:
        return  # nothing stored yet: the worker checks new photos' model version itself
    if new_model and model_version not in stored:
        return
    if model_version not in stored:
        raise ReleaseRefused(
            f"release embeddings come from model {model_version!r} but the stored photos come "
            f"from {', '.join(map(repr, sorted(stored)))}: its centroids would match noise"
        )
    if stored[model_version] != dim:
        raise ReleaseRefused(
            f"release embedding dim {dim} != stored photos' dim {stored[model_version]} "
            f"for model {model_version!r}"
        )


def check_provenance(cur: Any, release: Release) -> None:
    """Refuse a release built from an untrained embedding head beside a real scene head, as
    its build recorded it or as the stored photos of its model say."""
    heads = release.notes.get("heads") or {}
    try:
        refuse_untrained_embeddings(
            release.model_version,
            scene_trained=(heads.get("scene") or {}).get("trained"),
            embedding_trained=(heads.get("embedding") or {}).get("trained"),
        )
        cur.execute(
            "SELECT bool_or(scene_trained), bool_or(embedding_trained) FROM photos "
            "WHERE model_version = %s AND embedding IS NOT NULL",
            (release.model_version,),
        )
        scene, embedding = cur.fetchone()
        refuse_untrained_embeddings(
            release.model_version, scene_trained=scene, embedding_trained=embedding
        )
    except ReleaseError as exc:
        raise ReleaseRefused(str(exc)) from None


def import_release(conn: Any, release: Release, *, new_model: bool = False) -> str:
    """Load a release in one transaction; returns 'imported' or 'unchanged' (same content)."""
    digest = release.content_hash()
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT manifest->>'content_sha256' FROM releases WHERE version = %s",
            (release.version,),
        )
        row = cur.fetchone()
        if row is not None:
            if row[0] == digest:
                return "unchanged"
            raise ReleaseRefused(
                f"release {release.version} is already imported with other content: "
                "give the new release its own version"
            )
        check_compatible(cur, release.model_version, release.embedding_dim, new_model=new_model)
        check_provenance(cur, release)
        manifest = {**release.manifest(), "content_sha256": digest}
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, manifest,"
            " status) VALUES (%s, %s, %s, %s, %s, 'importing')",
            (
                release.version,
                release.embedding_dim,
                release.model_version,
                json.dumps(release.thresholds.to_dict()),
                json.dumps(manifest),
            ),
        )
        v = release.version
        ids = [str(x) for x in release.landmark_ids]

        def coord(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        execute_values(
            cur,
            "INSERT INTO landmarks (release, landmark_id, name, city, country, lat, lon,"
            " train_photos) VALUES %s",
            [
                (
                    v,
                    ids[i],
                    str(n),
                    str(c),
                    str(k),
                    coord(la),
                    coord(lo),
                    int(t) if t >= 0 else None,
                )
                for i, (n, c, k, la, lo, t) in enumerate(
                    zip(
                        release.names,
                        release.cities,
                        release.countries,
                        release.lats,
                        release.lons,
                        release.train_photos,
                    )
                )
            ],
            page_size=1000,
        )
        for table, vecs, owners in (
            ("centroids", release.centroids, release.centroid_landmarks),
            ("landmark_references", release.references, release.reference_landmarks),
        ):
            execute_values(
                cur,
                f"INSERT INTO {table} (release, landmark_id, embedding) VALUES %s",
                [(v, ids[o], vec) for vec, o in zip(vecs, owners.tolist())],
                page_size=1000,
            )
        execute_values(
            cur,
            "INSERT INTO landmark_names (release, landmark_id, locale, name) VALUES %s",
            [
                (v, ids[i], locale, str(name))
                for locale, names in release.localized_names.items()
                for i, name in enumerate(names)
                if str(name)
            ],
            page_size=1000,
        )
        cur.execute("UPDATE releases SET status = 'imported' WHERE version = %s", (v,))
    return "imported"


def activate(conn: Any, version: str) -> str | None:
    """Make ``version`` the active release of its model in one transaction; returns the one
    it replaced (the same model's previous active release), or None.

    Only a release whose re-tag completed ('ready') can become active: albums never show
    a half-matched release. Concurrent activations serialise on the releases' row locks.
    """
    with conn, conn.cursor() as cur:
        return activate_in(cur, version)


def activate_in(cur: Any, version: str) -> str | None:
    """``activate`` inside the caller's transaction (a fleet re-tag activates in the same
    transaction that closes its job). Releases of other model versions stay active: during
    a model switch each photo is read through the active release of its own model."""
    cur.execute("SELECT version, status, model_version FROM releases ORDER BY version FOR UPDATE")
    rows = {v: (s, m) for v, s, m in cur.fetchall()}
    if version not in rows:
        raise ReleaseRefused(f"no release {version!r} is imported")
    status, model = rows[version]
    if status == "active":
        return None
    if status != "ready":
        raise ReleaseRefused(
            f"release {version} is {status}, not ready: "
            f"run `sightline retag --release {version}` first"
        )
    previous = next((v for v, (s, m) in rows.items() if s == "active" and m == model), None)
    cur.execute(
        "UPDATE releases SET status = 'retired' WHERE status = 'active' AND version <> %s "
        "AND model_version = %s",
        (version, model),
    )
    cur.execute(
        "UPDATE releases SET status = 'active', activated_at = now() WHERE version = %s",
        (version,),
    )
    return previous


def list_releases(cur: Any) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT r.version, r.status, r.model_version, r.embedding_dim, r.thresholds,"
        " r.retag_cursor, r.imported_at, r.activated_at,"
        " (SELECT count(*) FROM landmarks l WHERE l.release = r.version),"
        " (SELECT count(*) FROM centroids c WHERE c.release = r.version)"
        " FROM releases r ORDER BY r.imported_at, r.version"
    )
    return [
        {
            "version": r[0],
            "status": r[1],
            "model_version": r[2],
            "embedding_dim": r[3],
            "thresholds": r[4],
            "retag_cursor": r[5],
            "imported_at": r[6].isoformat() if r[6] else None,
            "activated_at": r[7].isoformat() if r[7] else None,
            "landmarks": r[8],
            "centroids": r[9],
        }
        for r in cur.fetchall()
    ]


# ------------------------------------------------------------------ loading for matching
@dataclass(frozen=True)
class LiveRelease:
    """A landmark release the worker matches against (active, or being re-tagged)."""

    version: str
    model_version: str
    index: LandmarkIndex


class LiveReleases:
    """The live releases as a worker sees them: re-read at most every ``ttl_s`` seconds,
    each release loaded once per version. Shared by the batch threads of one process."""

    def __init__(self, ttl_s: float = RELEASE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._cache: dict[str, LiveRelease] = {}
        self._live: list[LiveRelease] = []
        self._read_at: float | None = None
        self._warned: set[str] = set()

    def current(self) -> list[LiveRelease]:
        """The live releases as last read (no query)."""
        return list(self._live)

    def expire(self) -> None:
        """Make the next ``get`` read the releases table again."""
        self._read_at = None

    def get(self, conn: Any, model_version: str | None) -> list[LiveRelease]:
        """The live releases, read through ``conn`` when the view is older than the TTL.

        A release built from another model than ``model_version`` is still returned (the
        pipeline skips it), with one warning per release for the process's lifetime.
        """
        if self._read_at is not None and time.monotonic() - self._read_at <= self.ttl_s:
            return self._live
        with conn, conn.cursor() as cur:
            self._live = load_live_releases(cur, self._cache)
        self._read_at = time.monotonic()
        for r in self._live:
            if r.model_version != model_version and r.version not in self._warned:
                # Its centroids come from another model's embeddings: matching would be
                # noise, so new photos are not matched against it. Say so once.
                log.warning(
                    "release %s was built from model %s, this worker runs %s: "
                    "new photos are not matched against it",
                    r.version,
                    r.model_version,
                    model_version,
                )
                self._warned.add(r.version)
        return self._live


def load_live_releases(cur: Any, cache: dict[str, LiveRelease]) -> list[LiveRelease]:
    """The releases new photos are matched against: the active one and any being re-tagged.

    ``cache`` keeps loaded releases by version, so only a new release costs a load.
    """
    cur.execute(
        "SELECT version, model_version, embedding_dim, thresholds FROM releases "
        "WHERE status IN ('active', 'retagging', 'ready') ORDER BY version"
    )
    live = []
    for version, model_version, dim, thresholds in cur.fetchall():
        if version not in cache:
            cache[version] = LiveRelease(
                version, model_version, load_index(cur, version, dim, thresholds)
            )
        live.append(cache[version])
    for stale in set(cache) - {r.version for r in live}:
        del cache[stale]
    return live


def as_array(vector: Any) -> np.ndarray:
    """pgvector's Vector (or a plain sequence) as float32."""
    values = vector.to_numpy() if hasattr(vector, "to_numpy") else vector
    return np.asarray(values, dtype=np.float32)


def load_index(cur: Any, version: str, dim: int, thresholds: Any) -> LandmarkIndex:
    """One release's landmarks, centroids (k, dim) and references (n, dim) as float32, and
    its thresholds (JSON object or dict; unknown keys ignored)."""
    th = thresholds if isinstance(thresholds, dict) else json.loads(thresholds)
    cur.execute(
        "SELECT landmark_id, lat, lon FROM landmarks WHERE release = %s ORDER BY landmark_id",
        (version,),
    )
    rows = cur.fetchall()
    ids = [r[0] for r in rows]

    def vectors(table: str) -> tuple[np.ndarray, np.ndarray]:
        # Binary COPY, not rows of text vectors: a 13,000-centroid release with its 44,000
        # references took ~12 s to parse per process (each fleet worker's first chunk);
        # the row layout's id carries the owner's position in ``ids`` (same ORDER BY).
        query = cur.mogrify(
            f"SELECT l.pos, 'NaN'::float8, 'NaN'::float8, t.embedding FROM {table} t "
            "JOIN (SELECT landmark_id, row_number() OVER (ORDER BY landmark_id) - 1 AS pos "
            "FROM landmarks WHERE release = %s) l USING (landmark_id) "
            "WHERE t.release = %s ORDER BY t.id",
            (version, version),
        ).decode()
        got = pgcopy.copy_out(cur, query, dim)  # ValueError for a vector of another width
        return got.embeddings.reshape(len(got), dim), got.ids

    centroids, c_owner = vectors("centroids")
    refs, r_owner = vectors("landmark_references")
    return LandmarkIndex(
        landmark_ids=ids,
        lats=np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64),
        lons=np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
        centroids=centroids,
        centroid_landmarks=c_owner,
        references=refs,
        reference_landmarks=r_owner,
        thresholds=Thresholds(
            **{k: float(v) for k, v in th.items() if k in Thresholds.__dataclass_fields__}
        ),
    )
