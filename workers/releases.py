"""Landmark releases in Postgres: import a release file, switch albums to it atomically.

Lifecycle: imported -> retagging -> ready -> active -> retired. The worker matches new
photos against active, retagging and ready releases, so a release being re-tagged misses
no upload. One release per model version can be active (model generations): album functions
read each photo's matches from the active release of that photo's model version.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from psycopg2.extras import execute_values

from models.release import Release


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
