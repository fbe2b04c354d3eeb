"""`sightline bench match --sweep SIZES`: landmark matching cost as a release's centroids grow.

In memory, as the worker and a re-tag match (``LandmarkIndex.match`` on a batch), and with
``--hnsw``, the same nearest-centroid question asked of Postgres: an exact scan against
an HNSW index (build time, query time, recall of the top 1). Random unit vectors: the cost
does not depend on what the vectors mean.
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median
from typing import Any


def _unit(rng: Any, n: int, dim: int) -> Any:
    import numpy as np

    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _in_memory(c: int, args: argparse.Namespace, rng: Any) -> dict[str, Any]:
    import numpy as np

    from models.landmarks import LandmarkIndex, Thresholds

    landmarks = max(1, c // 2)  # two viewpoints per landmark
    index = LandmarkIndex(
        landmark_ids=[f"l{i}" for i in range(landmarks)],
        lats=rng.uniform(-60, 60, landmarks),
        lons=rng.uniform(-180, 180, landmarks),
        centroids=_unit(rng, c, args.dim),
        centroid_landmarks=np.arange(c) % landmarks,
        references=_unit(rng, 3 * landmarks, args.dim),
        reference_landmarks=np.arange(3 * landmarks) % landmarks,
        thresholds=Thresholds(),
    )
    batch = _unit(rng, args.batch_size, args.dim)
    gps = np.column_stack([rng.uniform(-60, 60, args.batch_size), np.zeros(args.batch_size)])
    index.match(batch)  # warm-up
    times, geo_times = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        index.match(batch)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        index.match(batch, gps)
        geo_times.append(time.perf_counter() - t0)
    return {
        "centroids": c,
        "landmarks": landmarks,
        "memory_mb": round((c + 3 * landmarks) * args.dim * 4 / 2**20, 1),
        "batch_ms_no_gps": round(median(times) * 1000, 2),
        "batch_ms_gps": round(median(geo_times) * 1000, 2),
        "photos_per_s_no_gps": round(args.batch_size / median(times), 1),
    }


def _pgvector(url: str, c: int, args: argparse.Namespace, rng: Any) -> dict[str, Any]:
    import numpy as np

    from workers.db import connect

    vectors = _unit(rng, c, args.dim)
    queries = _unit(rng, args.queries, args.dim)
    conn = connect(url, timeout_s=3600)
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE bench_centroids (id int PRIMARY KEY, e vector({args.dim}))")
        for start in range(0, c, 5000):
            chunk = vectors[start : start + 5000]
            cur.execute(
                "INSERT INTO bench_centroids SELECT * FROM unnest(%s::int[], %s::vector[])",
                (list(range(start, start + len(chunk))), list(chunk)),
            )
        cur.execute("ANALYZE bench_centroids")

    def top1(q: Any, index: bool = False) -> tuple[float, int]:
        with conn, conn.cursor() as cur:
            if index:  # small tables tempt the planner to scan: measure the index itself
                cur.execute("SET LOCAL enable_seqscan = off")
            t0 = time.perf_counter()
            cur.execute("SELECT id FROM bench_centroids ORDER BY e <#> %s LIMIT 1", (q,))
            (found,) = cur.fetchone()
            return time.perf_counter() - t0, found

    exact = [top1(q) for q in queries]
    t0 = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.execute("CREATE INDEX ON bench_centroids USING hnsw (e vector_ip_ops)")
    build_s = time.perf_counter() - t0
    hnsw = [top1(q, index=True) for q in queries]
    with conn, conn.cursor() as cur:  # would the planner take the index by itself?
        cur.execute(
            "EXPLAIN SELECT id FROM bench_centroids ORDER BY e <#> %s LIMIT 1", (queries[0],)
        )
        plan = " ".join(r[0] for r in cur.fetchall())
    truth = np.argmax(queries @ vectors.T, axis=1)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = 'bench_centroids'::regclass AND NOT indisprimary"
        )
        index_bytes = int(cur.fetchone()[0])
        cur.execute("DROP TABLE bench_centroids")
    conn.close()
    return {
        "centroids": c,
        "exact_query_ms": round(median(t for t, _ in exact) * 1000, 2),
        "hnsw_build_s": round(build_s, 1),
        "hnsw_index_mb": round(index_bytes / 2**20, 1),
        "hnsw_query_ms": round(median(t for t, _ in hnsw) * 1000, 2),
        "planner_picks_hnsw": "Index Scan" in plan,
        "exact_top1_correct": float(np.mean([f == t for (_, f), t in zip(exact, truth)])),
        "hnsw_top1_recall": float(np.mean([f == t for (_, f), t in zip(hnsw, truth)])),
    }


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from sightline.cli import CliError

    try:
        sizes = [int(s) for s in args.sweep.split(",") if s.strip()]
    except ValueError:
        raise CliError("--sweep takes comma-separated integers") from None
    if not sizes or min(sizes) < 1:
        raise CliError("--sweep sizes must be positive")
    rng = np.random.default_rng(0)
    result: dict[str, Any] = {
        "dim": args.dim,
        "batch_size": args.batch_size,
        "in_memory": [_in_memory(c, args, rng) for c in sizes],
    }
    if args.hnsw:
        from sightline.embedded import database_url
        from sightline.stack import scratch_database
        from workers.settings import Settings

        base_url, _server = database_url(Settings.from_env())
        with scratch_database(base_url) as url:
            result["pgvector"] = [_pgvector(url, c, args, rng) for c in sizes]
    if args.json:
        print(json.dumps(result))
    else:
        for section in ("in_memory", "pgvector"):
            for row in result.get(section, []):
                print(section, " ".join(f"{k}={v}" for k, v in row.items()))
    return 0
