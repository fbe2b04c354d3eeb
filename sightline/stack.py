"""The local stack the demo, the soak, the benches and the tests share: a throwaway database
with the schema, and real `sightline worker` processes (started, and stopped without leaving
one behind). The embedded Postgres and moto are ``sightline/embedded.py``."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path


@contextlib.contextmanager
def scratch_database(base_url: str | None = None, prefix: str = "sightline_bench") -> Iterator[str]:
    """Create a database beside ``base_url``'s (default: the configured server), migrate it,
    yield its URL, then drop it."""
    from psycopg2.extensions import make_dsn, parse_dsn

    from sightline.embedded import database_url
    from workers import migrate
    from workers.db import connect
    from workers.settings import Settings

    server = None
    if base_url is None:
        base_url, server = database_url(Settings.from_env())
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = connect(base_url, register=False)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = make_dsn(**{**parse_dsn(base_url), "dbname": name})
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        del server  # the embedded server (if we started it) may stop now


def worker_process(
    env: Mapping[str, str], log: Path, *args: str, cwd: str | Path | None = None
) -> subprocess.Popen:
    """A real `sightline worker ARGS` process with ``env`` as its whole environment, its
    output (stdout and stderr) in the file ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "sightline", "worker", *args],
        env=dict(env),
        cwd=cwd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def stop_processes(procs: list[subprocess.Popen], timeout_s: float = 30.0) -> None:
    """Ask every process to stop (SIGTERM: a worker finishes its batch), then kill the ones
    still running after ``timeout_s`` seconds each."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
