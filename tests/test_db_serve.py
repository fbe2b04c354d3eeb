"""`sightline db serve|url|stop` keep the embedded Postgres and say where it is; `db upgrade`
on a Postgres without pgvector says in one line what to install."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.support import ROOT, run_cli

SYSTEM_PG = os.environ.get("SIGHTLINE_TEST_PLAIN_PG_URL", "postgresql://postgres@127.0.0.1:5432/")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder of our own, readable by the embedded server's user when we are root."""
    folder = Path(tempfile.mkdtemp(prefix="sl-serve-"))
    folder.chmod(0o755)
    yield folder
    subprocess.run([sys.executable, "-m", "sightline", "db", "stop"], cwd=ROOT, timeout=60,
                   env=dict(os.environ, SIGHTLINE_DATA_DIR=str(folder), PYTHONPATH=str(ROOT)),
                   capture_output=True)  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)


def _env(folder: Path) -> dict[str, str]:
    return {"SIGHTLINE_DATA_DIR": str(folder), "DATABASE_URL": ""}


def _select_one(url: str) -> int:
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone()[0]
    finally:
        conn.close()


def _system_pg_scratch() -> Iterator[str]:
    """A scratch database on the machine's own PostgreSQL when it runs and lacks pgvector."""
    try:
        admin = psycopg2.connect(SYSTEM_PG + "postgres", connect_timeout=3)
    except psycopg2.OperationalError:
        pytest.skip(f"no system PostgreSQL at {SYSTEM_PG}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
        if cur.fetchone()[0]:
            admin.close()
            pytest.skip("the system PostgreSQL has pgvector")
        cur.execute("DROP DATABASE IF EXISTS sl_novector_test")
        cur.execute("CREATE DATABASE sl_novector_test")
    try:
        yield SYSTEM_PG + "sl_novector_test"
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS sl_novector_test WITH (FORCE)")
        admin.close()


@pytest.fixture(params=["system-postgres", "embedded-without-vector"])
def no_vector_url(request, pg_server, empty_db_url) -> Iterator[tuple[str, int]]:
    """(URL, server major version) of a database where CREATE EXTENSION vector fails."""
    if request.param == "system-postgres":
        gen = _system_pg_scratch()
        url = next(gen)
        yield url, psycopg2.connect(url).server_version // 10000
        next(gen, None)
        return
    # PostgreSQL 18 looks for extensions only on extension_control_path: point it nowhere.
    name = empty_db_url.partition("?")[0].rsplit("/", 1)[1]
    admin = psycopg2.connect(pg_server.get_uri())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"ALTER DATABASE \"{name}\" SET extension_control_path = '/nonexistent'")
    admin.close()
    yield empty_db_url, 18


@pytest.mark.slow
def test_upgrade_without_pgvector_says_what_to_install(no_vector_url) -> None:
    """Exit status 2 and one stderr line naming pgvector and the package for that major."""
    url, major = no_vector_url
    done = run_cli("db", "upgrade", env={"DATABASE_URL": url}, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sightline: error: pgvector is not installed")
    assert f"apt install postgresql-{major}-pgvector" in lines[0]
    assert "Traceback" not in done.stderr
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:  # nothing half-applied
        cur.execute("SELECT to_regclass('photos'), to_regclass('schema_migrations')")
        assert cur.fetchone() == (None, None)
    conn.close()


@pytest.mark.slow
def test_serve_in_the_foreground_until_sigterm(data_dir: Path) -> None:
    """`db serve` prints a URL that takes connections and that `db url` repeats; SIGTERM
    exits 0 and stops the server."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **_env(data_dir))
    proc = subprocess.Popen([sys.executable, "-m", "sightline", "db", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("postgresql://"), url
        assert _select_one(url) == 1
        shown = run_cli("db", "url", env=_env(data_dir), timeout=60)
        assert (shown.returncode, shown.stdout.strip()) == (0, url)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    gone = run_cli("db", "url", env=_env(data_dir), timeout=60)
    assert gone.returncode == 2
    assert "sightline db serve --detach" in gone.stderr
    with pytest.raises(psycopg2.OperationalError):
        _select_one(url)


@pytest.mark.slow
def test_serve_ends_in_one_line_when_its_server_is_killed(data_dir: Path) -> None:
    """A foreground `db serve` kept running, silent, after its server was killed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **_env(data_dir))
    proc = subprocess.Popen([sys.executable, "-m", "sightline", "db", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("postgresql://")
        pid = int((data_dir / "pg18" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1] == (
        f"sightline: error: the embedded Postgres in {data_dir / 'pg18'} stopped"
    )


@pytest.mark.slow
def test_detached_server_outlives_its_users_until_db_stop(data_dir: Path) -> None:
    """`db serve --detach` returns at once; a command that joins the embedded server and exits
    (`db upgrade`) leaves it running; `db stop` stops it."""
    started = run_cli("db", "serve", "--detach", env=_env(data_dir), timeout=120)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert _select_one(url) == 1
    up = run_cli("db", "upgrade", env=_env(data_dir), timeout=120)
    assert up.returncode == 0, up.stderr
    assert _select_one(url) == 1  # still up after the upgrade's process exited
    assert run_cli("db", "url", env=_env(data_dir)).stdout.strip() == url
    assert run_cli("db", "url", env={"DATABASE_URL": "postgresql://h/db"}).stdout.strip() == (
        "postgresql://h/db"
    )
    stopped = run_cli("db", "stop", env=_env(data_dir), timeout=60)
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    with pytest.raises(psycopg2.OperationalError):
        _select_one(url)
