"""`sightline bench retag --workers 1,2`: fleet re-tag throughput by worker processes on one
table, each worker held to one BLAS thread (so the ratio measures the fleet, not BLAS), and
one unrestricted in-process re-tag against the numpy matrix-product limit.

Throughput of a fleet run is photos / (last chunk's commit - first chunk's start), from the
chunk rows, so worker start-up is not counted; the first chunk of each worker includes
loading the release. The matrix-product limit is photos/s of the (batch, dim) x (dim,
centroids) float32 product alone, the floor of the matching work, timed in this process
(all BLAS threads) and in a one-thread subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sightline.argtypes import MAX_PROCESSES

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
_ROOT = Path(__file__).resolve().parents[2]

_MATMUL = """
import json, sys, time
import numpy as np
n, dim, k, batch = (int(x) for x in sys.argv[1:5])
rng = np.random.default_rng(0)
c = rng.standard_normal((k, dim)).astype(np.float32)
q = rng.standard_normal((batch, dim)).astype(np.float32)
q @ c.T
done, t0 = 0, time.perf_counter()
while done < n:
    q @ c.T
    done += batch
print(json.dumps(done / (time.perf_counter() - t0)))
"""


def matmul_limit(photos: int, dim: int, centroids: int, batch: int, *, one_thread: bool) -> float:
    """photos/s of the similarity product alone, in a fresh process."""
    env = dict(os.environ, **ONE_THREAD) if one_thread else dict(os.environ)
    args = [str(photos), str(dim), str(centroids), str(batch)]
    out = subprocess.run(
        [sys.executable, "-c", _MATMUL, *args], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def _as_url(dsn: str) -> str:
    """A key=value DSN (the scratch database's) as the postgresql:// URL that workers'
    settings require."""
    from urllib.parse import quote

    from psycopg2.extensions import parse_dsn

    if "://" in dsn:
        return dsn
    d = parse_dsn(dsn)
    host = d.get("host", "")
    query = [f"host={quote(host, safe='')}"] if host.startswith("/") else []
    netloc = "" if host.startswith("/") else host
    if d.get("port"):
        query.append(f"port={d['port']}")
    user = quote(d.get("user", ""))
    q = ("?" + "&".join(query)) if query else ""
    return f"postgresql://{user}@{netloc}/{d.get('dbname', '')}{q}"


def _start_workers(n: int, url: str, broker: str, tag: str, logs: Path) -> list[subprocess.Popen]:
    """``n`` one-thread maintenance workers, each logging to ``logs/<tag><i>.log``."""
    from sightline.stack import worker_process

    env = dict(os.environ, **ONE_THREAD, DATABASE_URL=_as_url(url), CELERY_BROKER_URL=broker)
    env["PYTHONPATH"] = str(_ROOT)
    return [
        worker_process(env, logs / f"{tag}{i}.log", "-Q", "maintenance", "--concurrency", "1",
                       "--loglevel", "WARNING", "--hostname", f"{tag}{i}@%h", cwd=_ROOT)
        for i in range(n)
    ]  # fmt: skip


def _tails(logs: Path, lines: int = 5) -> str:
    return " | ".join(
        f"{log.name}: " + " / ".join(log.read_text(errors="replace").splitlines()[-lines:])
        for log in sorted(logs.glob("*.log"))
    )


def _wait_ready(broker: str, n: int, timeout_s: float = 180.0) -> None:
    from celery import Celery

    app = Celery("sightline-bench", broker=broker, set_as_current=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0) or []) >= n:
            return
    raise RuntimeError(f"{n} maintenance workers did not answer a ping in {timeout_s:.0f} s")


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def reset(conn: Any, version: str) -> None:
    """Every run starts alike: no matches of the release stored, the table vacuumed."""
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM landmark_matches WHERE release = %s", (version,))
    old = conn.autocommit
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE landmark_matches")
    conn.autocommit = old


def fleet_rate(
    conn: Any,
    url: str,
    broker: str,
    version: str,
    workers: int,
    chunk: int,
    *,
    timeout_s: float = 1800.0,
) -> dict:
    """One fleet re-tag of ``version`` with ``workers`` one-thread worker processes.

    Raises RuntimeError, with the chunks' states and the workers' last log lines, when the
    job fails, every worker exits, or it is still running after ``timeout_s`` seconds (a
    stall says what it waits for instead of waiting for ever)."""
    import tempfile

    from sightline.commands.retag_fleet import publish_chunks
    from workers import jobs
    from workers.retag_fleet import plan_retag

    reset(conn, version)
    with tempfile.TemporaryDirectory(prefix="sightline-bench-retag-") as folder:
        logs = Path(folder)
        procs = _start_workers(workers, url, broker, f"bench{workers}w", logs)
        try:
            _wait_ready(broker, workers)
            plan = plan_retag(conn, version, chunk_size=chunk, make_active=False)
            t0 = time.perf_counter()
            publish_chunks(broker, plan.job_id, plan.pending)
            while True:
                with conn, conn.cursor() as cur:
                    job = jobs.get(cur, plan.job_id)
                    cur.execute(
                        "SELECT state, count(*) FROM retag_chunks WHERE job_id = %s GROUP BY 1",
                        (plan.job_id,),
                    )
                    chunks = dict(cur.fetchall())
                stuck = (
                    "every worker exited" if all(p.poll() is not None for p in procs)
                    else f"still running after {timeout_s:.0f} s"
                    if time.perf_counter() - t0 > timeout_s else None
                )  # fmt: skip
                if job.state != "running" or stuck:
                    break
                time.sleep(0.2)
            wall = time.perf_counter() - t0
        finally:
            _stop(procs)
        if job.state != "done":
            why = stuck or f"ended {job.state}: {job.error}"
            raise RuntimeError(
                f"fleet re-tag job {plan.job_id} with {workers} worker(s) {why}; chunks {chunks}; "
                f"logs: {_tails(logs)}"
            )
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT sum(photos), extract(epoch FROM max(done_at) - min(started_at)), "
            "count(DISTINCT worker) FROM retag_chunks WHERE job_id = %s",
            (plan.job_id,),
        )
        photos, seconds, used = cur.fetchone()
    return {
        "photos": int(photos),
        "seconds": round(float(seconds), 2),
        "wall_seconds": round(wall, 2),
        "photos_per_s": round(int(photos) / float(seconds), 1),
        "workers_used": int(used),
        "chunks": plan.chunks,
    }


def run_fleet(args: Any) -> int:
    import numpy as np

    from sightline.benches._synthetic import random_release
    from sightline.benches.retag import _fill
    from sightline.cli import CliError
    from sightline.stack import scratch_database
    from workers.db import connect
    from workers.releases import import_release
    from workers.retag import retag_release
    from workers.settings import Settings

    try:
        counts = [int(x) for x in args.workers.split(",") if x.strip()]
    except ValueError:
        raise CliError("--workers takes worker counts, e.g. 1,2") from None
    if not counts or min(counts) < 1 or max(counts) > MAX_PROCESSES:
        raise CliError(f"--workers takes worker counts from 1 to {MAX_PROCESSES}, e.g. 1,2")
    broker = Settings.from_env().broker_url
    if not broker:
        raise CliError("CELERY_BROKER_URL is not set: the fleet bench needs a broker")
    rng = np.random.default_rng(0)
    release = random_release(rng, centroids=args.centroids, dim=args.dim)
    out: dict[str, Any] = {"photos": args.photos, "centroids": len(release.centroids),
                           "dim": args.dim, "chunk_size": args.chunk_size,
                           "cpus": os.cpu_count()}  # fmt: skip
    by_workers: dict[str, dict] = {}
    with scratch_database() as url:
        conn = connect(url, timeout_s=900)
        import_release(conn, release)
        t0 = time.perf_counter()
        _fill(conn, rng, release, args.photos)
        out["fill_seconds"] = round(time.perf_counter() - t0, 1)
        for n in counts:
            by_workers[str(n)] = fleet_rate(conn, url, broker, release.version, n, args.chunk_size)
        reset(conn, release.version)
        local = retag_release(
            conn, release.version, batch_size=args.batch_size, progress=False, make_active=False
        )
        conn.close()
    rates = {k: v["photos_per_s"] for k, v in by_workers.items()}
    out["photos_per_s_by_workers"] = rates
    out["runs"] = by_workers
    if "1" in rates and "2" in rates:
        out["scaling"] = round(rates["2"] / rates["1"], 2)
    limit_all = matmul_limit(args.photos, args.dim, len(release.centroids), args.batch_size,
                             one_thread=False)  # fmt: skip
    limit_one = matmul_limit(args.photos, args.dim, len(release.centroids), args.batch_size,
                             one_thread=True)  # fmt: skip
    unrestricted = local.photos / local.seconds
    out["unrestricted_process"] = {
        "photos_per_s": round(unrestricted, 1),
        "matmul_limit_photos_per_s": round(limit_all, 1),
        "share_of_limit": round(unrestricted / limit_all, 2),
    }
    out["matmul_limit_one_thread_photos_per_s"] = round(limit_one, 1)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:36} {v}")
    return 0
