"""Helpers the tests share (one way to import them: ``from tests.support import ...``):
broker URLs, task payloads as the handler sends them, real worker and CLI processes, waiting
for a condition, draining a broker queue."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sightline.stack import stop_processes, worker_process

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("SIGHTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("SIGHTLINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def object_task(
    bucket: str,
    key: str,
    *,
    seq: str | None = "10",
    owner: str = "alice",
    event_time: str | None = None,
) -> dict:
    """The kwargs of a `sightline.tag` / `sightline.forget` task, as the handler sends them."""
    from handlers.contract import normalize_sequencer

    return {
        "bucket": bucket,
        "key": key,
        "version_id": None,
        "etag": None,
        "size": None,
        "sequencer": normalize_sequencer(seq),
        "event_time": event_time,
        "owner": owner,
    }


def worker_env(db_url: str, broker_url: str, s3_endpoint: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker_url,
        SIGHTLINE_S3_ENDPOINT_URL=s3_endpoint,
        SIGHTLINE_ALLOW_UNTRAINED="1",
        SIGHTLINE_ARCH="tiny",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen:
    """A real `sightline worker` process (``sightline.stack.worker_process``)."""
    return worker_process(env, log, "--loglevel=INFO", *args, cwd=ROOT)


def stop_worker(proc: subprocess.Popen) -> None:
    stop_processes([proc], timeout_s=20)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `sightline ARGS` as a user would, in a fresh process."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sightline", *args],
        env=full_env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def drain(url: str, queue: str, expect: int, timeout: float = 15.0) -> list[tuple[dict, Any]]:
    """Consume with kombu until ``expect`` messages came, then a moment more to catch extras."""
    from kombu import Connection, Queue

    got: list[tuple[dict, Any]] = []

    def on_message(body: Any, message: Any) -> None:
        got.append((dict(message.headers), body))
        message.ack()

    with (
        Connection(url, transport_options={"polling_interval": 0.1}) as conn,
        conn.Consumer(Queue(queue, no_declare=True), callbacks=[on_message], accept=["json"]),
    ):
        deadline = time.monotonic() + timeout
        settle: float | None = None
        while time.monotonic() < deadline:
            if len(got) >= expect and settle is None:
                settle = time.monotonic() + 0.25
            if settle is not None and time.monotonic() > settle:
                break
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.2)
    return got
