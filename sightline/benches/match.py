"""`sightline bench match`: per-photo matching latency against a release of 13,000
centroids (dim 512): in memory without and with GPS, and as a pgvector query. With
``--sweep SIZES``, the cost as centroids grow instead (``_sweep.py``)."""

from __future__ import annotations

import argparse
import json
import time

from sightline.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("match", help="landmark matching latency (target <= 2 ms per photo)")
    p.add_argument(
        "--centroids",
        type=positive_int,
        default=13_000,
        help="centroids in the synthetic release (default 13000)",
    )
    p.add_argument("--dim", type=positive_int, default=512, help="embedding width (default 512)")
    p.add_argument("--photos", type=positive_int, default=4_000, help="photos matched in memory")
    p.add_argument("--single", type=positive_int, default=300, help="photos matched one at a time")
    p.add_argument(
        "--pgvector-queries",
        type=int,
        default=300,
        help="photos matched through Postgres' HNSW index, at most --photos (default 300)",
    )
    p.add_argument("--no-pgvector", action="store_true", help="skip the Postgres (pgvector) timing")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    sweep = p.add_argument_group("sweep (--sweep SIZES: time per batch as centroids grow)")
    sweep.add_argument("--sweep", default=None, help="comma-separated centroid counts")
    sweep.add_argument(
        "--batch-size", type=int, default=16, help="photos matched per timed batch (default 16)"
    )
    sweep.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="timed batches per size; the median is kept (default 5)",
    )
    sweep.add_argument("--hnsw", action="store_true", help="also time Postgres exact vs HNSW")
    sweep.add_argument("--queries", type=int, default=50, help="pgvector queries per size")
    p.set_defaults(func=run)


def _per_photo_ms(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start) / n


def run(args: argparse.Namespace) -> int:
    import numpy as np

    if args.sweep is not None:
        from sightline.benches import _sweep

        return _sweep.run(args)

    from sightline.benches._synthetic import queries, random_release

    rng = np.random.default_rng(0)
    release = random_release(rng, centroids=args.centroids, dim=args.dim)
    index = release.index()
    q, gps = queries(rng, release, args.photos)
    no_gps = np.full_like(gps, np.nan)
    all_gps = np.where(np.isnan(gps), [[48.85, 2.35]], gps)
    index.match_arrays(q[:64], gps[:64])  # warm-up: BLAS threads, page faults
    out = {
        "centroids": len(release.centroids),
        "landmarks": len(release.landmark_ids),
        "dim": args.dim,
        "photos": args.photos,
        "ms_per_photo": _per_photo_ms(lambda: index.match_arrays(q, no_gps), args.photos),
        "ms_per_photo_geo": _per_photo_ms(lambda: index.match_arrays(q, all_gps), args.photos),
        "ms_per_photo_single": _per_photo_ms(
            lambda: [index.match(q[i : i + 1]) for i in range(args.single)], args.single
        ),
        "ms_per_photo_pgvector": None,
    }
    if not args.no_pgvector:
        out.update(_pgvector(release, q[: args.pgvector_queries]))
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:28} {v}")
    return 0


def _pgvector(release, q) -> dict:
    """Top-10 centroids by inner product through the HNSW (vector_ip_ops) index."""
    from sightline.stack import scratch_database
    from workers.db import connect
    from workers.releases import import_release

    dim = release.embedding_dim
    cast = f"embedding::vector({dim})"
    sql = (
        f"SELECT landmark_id, -({cast} <#> %(q)s::vector({dim})) FROM centroids "
        f"WHERE vector_dims(embedding) = {dim} AND release = %(r)s "
        f"ORDER BY {cast} <#> %(q)s::vector({dim}) LIMIT 10"
    )
    with scratch_database() as url:
        conn = connect(url, timeout_s=600)
        import_release(conn, release)
        with conn, conn.cursor() as cur:
            cur.execute("ANALYZE centroids")
            cur.execute("EXPLAIN " + sql, {"q": q[0], "r": release.version})
            plan = "\n".join(r[0] for r in cur.fetchall())
            for v in q[:10]:  # warm the index pages
                cur.execute(sql, {"q": v, "r": release.version})
            start = time.perf_counter()
            for v in q:
                cur.execute(sql, {"q": v, "r": release.version})
                cur.fetchall()
            ms = 1000 * (time.perf_counter() - start) / len(q)
        conn.close()
    return {
        "ms_per_photo_pgvector": ms,
        "pgvector_queries": len(q),
        "pgvector_index_used": "centroids_embedding_ip_512" in plan,
    }
