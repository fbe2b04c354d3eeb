"""Startup checks: a worker reaches its broker, database and object store before it says
ready, and refuses to start, in one line, when one of them cannot be used."""

from __future__ import annotations

from typing import Any

from handlers.config import mask


class StartupError(RuntimeError):
    """A dependency the worker cannot use, with the reason in one line."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def check_broker(url: str, options: dict[str, Any], *, timeout_s: float = 10.0) -> None:
    """Connect (and log in) to the broker once; raises StartupError."""
    from kombu import Connection

    conn = Connection(url, connect_timeout=timeout_s, transport_options=options)
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout_s)
        conn.default_channel  # noqa: B018  (opens a channel: the login for AMQP and Redis)
    except Exception as exc:
        raise StartupError(f"broker {mask('url', url)}: {_first_line(exc)}") from None
    finally:
        conn.release()


def check_database(url: str, *, timeout_s: float = 30.0) -> None:
    """Connect with pgvector and find every migration applied; raises StartupError."""
    from workers.db import DatabaseError, connect

    try:
        conn = connect(url, timeout_s=timeout_s)
    except DatabaseError as exc:
        raise StartupError(f"database: {exc}") from None
    from workers.migrate import available

    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            done: set[str] = set()
            if cur.fetchone()[0]:
                cur.execute("SELECT version FROM schema_migrations")
                done = {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    if not done:
        raise StartupError("database: no sightline schema: run `sightline db upgrade`")
    missing = [m.version for m in available() if m.version not in done]
    if missing:
        raise StartupError(
            f"database: schema is behind this worker (missing {', '.join(missing)}): "
            "run `sightline db upgrade`"
        )


def check_object_store(endpoint_url: str | None, *, timeout_s: float = 10.0) -> None:
    """One S3 request; an answer of any kind (even AccessDenied: the worker may read objects
    without listing buckets) proves the endpoint and credentials. Raises StartupError."""
    from botocore.exceptions import BotoCoreError, ClientError

    from workers.fetch import s3_client

    try:
        s3_client(endpoint_url, timeout_s).list_buckets()
    except ClientError:
        return
    except BotoCoreError as exc:
        where = endpoint_url or "AWS S3"
        raise StartupError(f"object store {where}: {_first_line(exc)}") from None


def check_all(
    settings: Any, database_url: str, broker_url: str, *, object_store: bool = True
) -> None:
    """Broker, database, object store, in that order; raises StartupError at the first fault.

    ``object_store=False``: a maintenance-only worker (deletes, re-tag chunks) never reads
    photos, so the object store is not its concern."""
    check_broker(broker_url, settings.broker_options, timeout_s=min(settings.db_timeout_s, 10))
    check_database(database_url, timeout_s=settings.db_timeout_s)
    if object_store:
        check_object_store(settings.s3_endpoint_url, timeout_s=min(settings.s3_timeout_s, 10))
