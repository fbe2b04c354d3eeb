"""`sightline bench handler` prints its figures as one JSON object and cleans up after itself."""

from __future__ import annotations

import json

import pytest
import redis

from tests.support import run_cli


@pytest.mark.slow
def test_bench_handler_prints_figures_and_leaves_no_queues(redis_url: str) -> None:
    """The bench reports records/s, publish/s per broker and cold import; its queues are gone."""
    done = run_cli(
        "bench",
        "handler",
        "--json",
        "--records",
        "300",
        "--batch",
        "50",
        "--imports",
        "2",
        "--redis-url",
        redis_url,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["failed_messages"] == 0
    assert set(figures["publish_per_s"]) == {"redis", "rabbitmq"}, figures["errors"]
    assert not figures["errors"] and None not in figures["publish_per_s"].values()
    runs = figures["cold_import_runs_ms"]
    assert len(runs) == 2 and figures["cold_import_ms"] == pytest.approx(sum(runs) / 2, abs=0.2)
    assert figures["heavy_modules_at_import"] == []
    assert redis.Redis.from_url(redis_url).keys("*sightline-bench*") == []


@pytest.mark.slow
def test_bench_handler_with_no_redis_is_a_one_line_error() -> None:
    """An unreachable Redis is reported in one line, not a traceback."""
    done = run_cli("bench", "handler", "--records", "10", "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert done.stderr.startswith("sightline: error: Redis at redis://127.0.0.1:1/0 is not usable")
    assert len(done.stderr.strip().splitlines()) == 1
