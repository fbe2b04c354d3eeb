"""The local stack the demo, the soak, the benches and the tests share: a throwaway database
with the schema, and real `sightline worker` processes (started, and stopped without leaving
one behind). The embedded Postgres and moto are ``sightline/embedded.py``."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path


class StackError(RuntimeError):
    """A local-stack wait that cannot end well (a worker exited, time ran out); one line."""


@contextlib.contextmanager
def scratch_database(
    base_url: str | None = None, prefix: str = "sightline_bench", *, until: str | None = None
) -> Iterator[str]:
    """Create a database beside ``base_url``'s (default: the configured server), migrate it
    (up to migration ``until`` if given, see ``workers.migrate.upgrade``), yield its URL, then
    drop it."""
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
        migrate.upgrade(url, until=until)
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


def wait_for_rows(
    count: Callable[[], int],
    want: int,
    *,
    timeout_s: float,
    workers: Sequence[subprocess.Popen] = (),
    settled: Callable[[], bool] = lambda: True,
    progress: Callable[[int], None] | None = None,
    interval_s: float = 0.5,
) -> int:
    """Poll ``count()`` (rows the workers have written) until it reaches ``want`` and
    ``settled()`` holds (e.g. the queues are drained); returns the last count.

    Raises StackError when a worker in ``workers`` exits first, or after ``timeout_s``
    seconds, naming how many rows were done.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        done = count()
        if done >= want and settled():
            return done
        exited = [w for w in workers if w.poll() is not None]
        if exited:
            raise StackError(f"a worker exited ({exited[0].returncode}) with {done}/{want} done")
        if time.monotonic() > deadline:
            raise StackError(f"only {done}/{want} done after {timeout_s:.0f} s")
        if progress:
            progress(done)
        time.sleep(interval_s)
