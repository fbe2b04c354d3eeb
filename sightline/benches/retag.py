"""`sightline bench retag`: re-tag throughput over stored embeddings, the batched method
(binary COPY + one matrix product per batch) against a per-row pgvector query, in one run."""

from __future__ import annotations

import argparse
import json
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retag", help="re-tag photos/s (targets >= 10,000/s and >= 20x per-row)")
    p.add_argument(
        "--photos", type=int, default=200_000, help="stored embeddings to re-tag (default 200000)"
    )
    p.add_argument(
        "--centroids", type=int, default=13_000, help="centroids in the release (default 13000)"
    )
    p.add_argument("--dim", type=int, default=512, help="embedding width (default 512)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=20_000,
        help="photos per batch of the in-process re-tag (default 20000)",
    )
    p.add_argument("--per-row-sample", type=int, default=2_000, help="photos timed per row")
    p.add_argument(
        "--workers",
        help="fleet mode: worker process counts to time on the same table, e.g. 1,2 "
        "(one BLAS thread each; needs CELERY_BROKER_URL); see benches/retag_fleet.py",
    )
    p.add_argument("--chunk-size", type=int, default=10_000, help="photos per task (--workers)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=run)


# Photos written per transaction by the fill. Each photo's status-count trigger (0012)
# updates one counter row, and every update of a row that one transaction already updated
# walks the versions that transaction left behind: n photos in one transaction cost O(n^2)
# (200,000 took longer than the whole bench was given). Small transactions keep it linear.
FILL_ROWS_PER_TRANSACTION = 2_000


def _fill(conn, rng, release, n: int) -> None:
    """Store ``n`` tagged photos of the release's model (2 % near a landmark, half with
    GPS), ids 1..n, in transactions of ``FILL_ROWS_PER_TRANSACTION`` photos; then vacuum."""
    import numpy as np

    from sightline.benches._synthetic import queries
    from workers import pgcopy

    with conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE stage (id bigint, lat float8, lon float8, "
            f"embedding vector({release.embedding_dim}))"
        )
        for lo in range(0, n, 50_000):
            k = min(50_000, n - lo)
            q, gps = queries(rng, release, k)
            pgcopy.copy_in(cur, "stage", np.arange(lo + 1, lo + k + 1), gps, q)
        cur.execute("CREATE INDEX ON stage (id)")
        cur.execute("ANALYZE stage")
    for lo in range(0, n, FILL_ROWS_PER_TRANSACTION):
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO photos (id, owner, bucket, key, status, model_version, gps_lat,"
                " gps_lon, embedding) SELECT id, 'bench', 'bench', 'p/' || id, 'tagged', %s,"
                " nullif(lat, 'NaN'), nullif(lon, 'NaN'), embedding FROM stage"
                " WHERE id > %s AND id <= %s",
                (release.model_version, lo, lo + FILL_ROWS_PER_TRANSACTION),
            )
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE stage")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT setval('photos_id_seq', %s)", (n,))
    old = conn.autocommit
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE photos")
    conn.autocommit = old


def _per_row(conn, release, sample: int) -> float:
    """photos/s of one pgvector query per photo, writing its matches like the batch does."""
    from workers.releases import load_index

    dim = release.embedding_dim
    cast = f"embedding::vector({dim})"
    top = (
        f"SELECT landmark_id, -({cast} <#> %(q)s::vector({dim})) FROM centroids "
        f"WHERE vector_dims(embedding) = {dim} AND release = %(r)s "
        f"ORDER BY {cast} <#> %(q)s::vector({dim}) LIMIT 10"
    )
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT embedding_dim, thresholds FROM releases WHERE version = %s", (release.version,)
        )
        th = load_index(cur, release.version, *cur.fetchone()).thresholds
        cur.execute(
            "SELECT id, embedding FROM photos WHERE embedding IS NOT NULL ORDER BY id LIMIT %s",
            (sample,),
        )
        rows = cur.fetchall()
    start = time.perf_counter()
    with conn, conn.cursor() as cur:
        for pid, emb in rows:
            cur.execute(top, {"q": emb, "r": release.version})
            for lid, score in cur.fetchall():
                if score >= th.general:
                    cur.execute(
                        "INSERT INTO landmark_matches (release, photo_id, landmark_id, score,"
                        " owner) VALUES (%s, %s, %s, %s, 'bench') ON CONFLICT DO NOTHING",
                        (release.version, pid, lid, score),
                    )
        conn.rollback()  # the baseline's writes are not kept
    return len(rows) / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> int:
    if args.workers:
        from sightline.benches.retag_fleet import run_fleet

        return run_fleet(args)
    import numpy as np

    from sightline.benches._synthetic import random_release
    from sightline.stack import scratch_database
    from workers.db import connect
    from workers.releases import import_release
    from workers.retag import retag_release

    rng = np.random.default_rng(0)
    release = random_release(rng, centroids=args.centroids, dim=args.dim)
    with scratch_database() as url:
        conn = connect(url, timeout_s=900)
        import_release(conn, release)
        t0 = time.perf_counter()
        _fill(conn, rng, release, args.photos)
        fill_s = time.perf_counter() - t0
        summary = retag_release(conn, release.version, batch_size=args.batch_size, progress=False)
        per_row = _per_row(conn, release, args.per_row_sample)
        conn.close()
    rate = summary.photos / summary.seconds
    out = {
        "photos": summary.photos,
        "centroids": len(release.centroids),
        "dim": args.dim,
        "batch_size": args.batch_size,
        "seconds": round(summary.seconds, 3),
        "photos_per_s": round(rate, 1),
        "matches": summary.matches,
        "per_row_photos_per_s": round(per_row, 1),
        "per_row_sample": args.per_row_sample,
        "ratio": round(rate / per_row, 1),
        "fill_seconds": round(fill_s, 1),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:22} {v}")
    return 0
