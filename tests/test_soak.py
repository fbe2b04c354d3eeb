"""`sightline bench soak` at a small size: every image event ends as exactly one photo row."""

from __future__ import annotations

import json

import pytest

from tests.support import run_cli

pytestmark = pytest.mark.slow


def test_soak_reconciles_every_event(pg_server, redis_url, moto_endpoint) -> None:
    """200 events (some repeated, some for corrupt or deleted objects) through handler, Redis
    and a worker process: none lost, none duplicated, each bad one failed with its reason."""
    done = run_cli(
        "bench", "soak", "--json", "--events", "200",
        env={
            "DATABASE_URL": pg_server.get_uri(),
            "SIGHTLINE_SOAK_BROKER_URL": redis_url,
            "SIGHTLINE_S3_ENDPOINT_URL": moto_endpoint,
        },
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["lost"] == result["duplicated"] == result["mismatched"] == 0
    assert result["events"] == 200 and result["repeated_events"] == 4
    assert result["rows"] == result["photos"] == 196
    assert result["expected"] == {"tagged": 188, "failed": 4, "gone": 4}
    assert result["failed"] == {"failed: corrupt or truncated image": 4, "gone: object gone": 4}
    assert result["repeat_writes"] >= 4  # each repeated event was written again, idempotently
    assert result["events_per_s"] == pytest.approx(200 / result["elapsed_s"], rel=0.05)


def test_soak_refuses_a_broker_that_is_not_redis() -> None:
    """The soak counts messages on Redis; another broker URL is a one-line error."""
    done = run_cli("bench", "soak", "--broker-url", "amqp://guest:guest@127.0.0.1:5672//")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("sightline: error: the soak counts messages on Redis")
