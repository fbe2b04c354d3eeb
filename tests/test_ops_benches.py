"""The operations benchmarks run end to end and report what they measured (no speed asserts)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


def test_bench_writes_writes_every_photo_and_reports_per_connection_count(pg_server) -> None:
    """bench writes commits every generated photo (warm-up plus one run per connection
    count) and reports rows/s for each count, bytes per photo and the embedding read rate."""
    out = run_cli(
        "bench",
        "writes",
        "--photos=40",
        "--batch-size=8",
        "--connections=1,2",
        "--json",
        env={"DATABASE_URL": pg_server.get_uri()},
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["rows_stored"] == 40 * 5  # warm-up, both paths on one connection, 1 and 2
    assert r["rows_per_s_per_connection"] > 0 and r["previous_rows_per_s_per_connection"] > 0
    assert r["ratio"] == pytest.approx(
        r["rows_per_s_per_connection"] / r["previous_rows_per_s_per_connection"], rel=0.02
    )
    assert [run["connections"] for run in r["runs"]] == [1, 2]
    assert all(run["rows_per_s"] > 0 and run["batch_ms_median"] > 0 for run in r["runs"])
    # A 512-d float32 embedding alone is 2 KiB: a stored photo cannot be smaller.
    assert r["bytes_per_photo"] > 2048 and r["embedding_read_rows_per_s"] > 0


def test_bench_matching_in_memory_and_pgvector(pg_server) -> None:
    """bench matching times each centroid count in memory and, with --pgvector, an exact
    scan (always right on top 1) against an HNSW index."""
    out = run_cli(
        "bench",
        "matching",
        "--centroids=50,200",
        "--dim=16",
        "--repeat=2",
        "--queries=5",
        "--pgvector",
        "--json",
        env={"DATABASE_URL": pg_server.get_uri()},
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert [m["centroids"] for m in r["in_memory"]] == [50, 200]
    assert [p["centroids"] for p in r["pgvector"]] == [50, 200]
    assert all(p["exact_top1_correct"] == 1.0 for p in r["pgvector"])
    assert all(0.0 <= p["hnsw_top1_recall"] <= 1.0 for p in r["pgvector"])


def test_bench_bad_sizes_are_one_line_errors() -> None:
    """Unreadable sizes give one clear line and status 2, before any database work."""
    out = run_cli("bench", "matching", "--centroids=ten")
    assert out.returncode == 2
    assert out.stderr.strip() == "sightline: error: --centroids takes comma-separated integers"
    out = run_cli("bench", "writes", "--connections=0")
    assert out.returncode == 2
    assert "must be positive" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_bench_publish_counts_what_reached_redis_and_cleans_up(redis_url) -> None:
    """bench publish sends through the handler's publisher to a private queue, reports how
    many arrived, and leaves no message behind."""
    import redis

    out = run_cli(
        "bench", "publish", f"--broker={redis_url}", "--tasks=30", "--per-call=7", "--json"
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["tasks"], r["queued"]) == (30, 31)  # plus the one sent before the clock
    client = redis.Redis.from_url(redis_url)
    assert [k for k in client.keys("sightline-bench-*")] == []


@pytest.mark.slow
def test_bench_backfill_reports_every_rate(pg_server, redis_url) -> None:
    """bench backfill publishes every inventory row and listed key, skips every no-op task
    and waits for every tagged photo, and reports each rate from what it counted."""
    env = {
        "DATABASE_URL": pg_server.get_uri(),
        "CELERY_BROKER_URL": redis_url,
        "SIGHTLINE_ARCH": "tiny",
        "SIGHTLINE_ALLOW_UNTRAINED": "1",
    }
    out = run_cli(
        "bench",
        "backfill",
        "--inventory-rows=2500",
        "--list-keys=120",
        "--noop-photos=80",
        "--tagged-photos=6",
        "--page-size=500",
        "--json",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["inventory"]["tasks"], r["inventory"]["pages"]) == (2500, 6)
    assert r["list"]["tasks"] == 120 and r["noop"]["tasks"] == 80 - 16
    assert r["tagged"]["photos"] == 6
    for name, part, count in (
        ("inventory_rows_to_tasks_per_s", "inventory", "tasks"),
        ("list_to_tasks_per_s", "list", "tasks"),
        ("noop_per_s", "noop", "tasks"),
        ("tagged_per_s", "tagged", "photos"),
    ):
        assert r[name] == pytest.approx(r[part][count] / r[part]["seconds"], rel=0.02), name
    import redis

    assert redis.Redis.from_url(redis_url).keys("sightline-bench-*") == []
