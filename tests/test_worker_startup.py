"""Startup checks and exit status: a worker that cannot use its broker, database or object
store stops before it says ready, in one line, with a non-zero status."""

from __future__ import annotations

import json

import pytest

from tests.support import AMQP_URL, run_cli, worker_env


@pytest.mark.slow
def test_broker_refusing_the_login_exits_non_zero(db_url, moto_endpoint) -> None:
    """RabbitMQ refusing the login stops the worker with status 2 (Celery alone: status 0)."""
    env = worker_env(db_url, "amqp://nobody:wrong@127.0.0.1:5672//", moto_endpoint)
    result = run_cli("worker", env=env, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sightline: error: broker amqp://nobody:***@127.0.0.1:5672//: ")
    assert "ACCESS_REFUSED" in line and "wrong" not in line


@pytest.mark.slow
def test_unreachable_database_exits_non_zero(redis_url, moto_endpoint) -> None:
    """A database nobody answers at stops the worker, instead of 'ready' and endless retries."""
    env = worker_env("postgresql://nobody@127.0.0.1:1/none", redis_url, moto_endpoint)
    result = run_cli("worker", env=env, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sightline: error: database: cannot connect to Postgres")


@pytest.mark.slow
def test_database_without_schema_exits_non_zero(empty_db_url, redis_url, moto_endpoint) -> None:
    """A database never upgraded: one line that says what to run."""
    result = run_cli("worker", env=worker_env(empty_db_url, redis_url, moto_endpoint), timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sightline: error: database: ") and "sightline db upgrade" in line


@pytest.mark.slow
def test_dead_object_store_exits_non_zero(db_url, redis_url) -> None:
    """An object store nobody answers at: one line naming it."""
    env = worker_env(db_url, redis_url, "http://127.0.0.1:1", SIGHTLINE_S3_TIMEOUT_S="2")
    result = run_cli("worker", env=env, timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sightline: error: object store http://127.0.0.1:1: ")


@pytest.mark.slow
def test_celery_unrecoverable_error_exits_1(db_url, moto_endpoint) -> None:
    """Past the startup checks, Celery's own "Unrecoverable error" (here RabbitMQ refusing a
    queue named with its reserved amq. prefix) ends the process with status 1, not 0; in JSON
    mode that error is a JSON line too."""
    env = worker_env(db_url, AMQP_URL, moto_endpoint, SIGHTLINE_LOG_FORMAT="json")
    result = run_cli("worker", "--queues=amq.sightline-test", env=env, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [json.loads(x) for x in result.stderr.splitlines()]
    assert any(x["message"].startswith("Unrecoverable error: AccessRefused") for x in lines)


@pytest.mark.slow
def test_startup_error_is_a_json_line_in_json_mode(redis_url, moto_endpoint) -> None:
    env = worker_env(
        "postgresql://nobody@127.0.0.1:1/none", redis_url, moto_endpoint,
        SIGHTLINE_LOG_FORMAT="json",
    )  # fmt: skip
    result = run_cli("worker", env=env, timeout=120)
    assert result.returncode == 2
    (line,) = [json.loads(x) for x in result.stderr.splitlines()]
    assert line["level"] == "ERROR" and line["message"].startswith("sightline: error: database")
