"""Embedded stand-ins for a laptop: pgserver's Postgres 16 + pgvector, moto's S3/SQS server."""

from __future__ import annotations

import logging
import socket
import warnings
from pathlib import Path
from typing import Any

from sightline.settings import Settings, data_dir


def embedded_postgres(pgdata: Path | None = None, *, keep_running: bool = False) -> Any:
    """Start (or join) the embedded Postgres in the user's data folder; returns the server.

    With ``keep_running`` False it stops when the last process using it exits.
    """
    warnings.filterwarnings("ignore", module="platformdirs")
    import pgserver

    pgdata = pgdata or data_dir() / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver.get_server(pgdata, cleanup_mode=None if keep_running else "stop")


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
