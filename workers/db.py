"""Postgres connections: pgvector registered once per connection, timeouts on every call."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
from pgvector.psycopg2 import register_vector


class DatabaseError(RuntimeError):
    """A database that cannot be used, with the reason in one line."""


def connect(url: str, *, timeout_s: float = 30.0, register: bool = True):
    """Open a connection with connect and statement timeouts; register pgvector.

    Fails fast with a clear message when the server is unreachable or lacks pgvector.
    """
    try:
        conn = psycopg2.connect(
            url,
            connect_timeout=max(1, int(timeout_s)),
            options=f"-c statement_timeout={int(timeout_s * 1000)}",
            application_name="sightline",
        )
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise DatabaseError(f"cannot connect to Postgres: {first}") from exc
    if register:
        try:
            register_vector(conn)
        except psycopg2.ProgrammingError as exc:
            conn.close()
            raise DatabaseError(
                "the pgvector extension is not installed in this database: "
                "run `sightline db upgrade` (it needs a Postgres with pgvector available)"
            ) from exc
        conn.commit()
    return conn
