"""Postgres connections: pgvector registered once per connection, timeouts on every call,
one connection per worker thread, and lost connections turned into retries."""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Any

import psycopg2
import psycopg2.extensions
from pgvector.psycopg2 import register_vector

from workers.errors import TransientError, first_line


class DatabaseError(RuntimeError):
    """A database that cannot be used, with the reason in one line."""


def connect(
    url: str, *, timeout_s: float = 30.0, register: bool = True, application: str = "sightline"
):
    """Open a connection with connect and statement timeouts; register pgvector.

    Fails fast with a clear message when the server is unreachable or lacks pgvector.
    """
    try:
        conn = psycopg2.connect(
            url,
            connect_timeout=max(1, int(timeout_s)),
            # at least 1 ms: 0 would switch the timeout off
            options=f"-c statement_timeout={max(1, math.ceil(timeout_s * 1000))}",
            application_name=application,
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


# SQLSTATEs of a transaction rolled back for another's sake, no statement's or row's fault:
# 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available.
CONFLICTS = frozenset({"40001", "40P01", "55P03"})


class ThreadConnections:
    """One connection per thread (each batch thread has its own), reopened after a fault.

    A lost connection becomes a ``TransientError`` for the caller to retry; an error the
    server answered with a SQLSTATE is left to the caller (it is a bug or bad data).
    """

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._local = threading.local()

    def get(self) -> Any:
        """This thread's connection; raises TransientError when the server cannot be reached."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = connect(self.url, timeout_s=self.timeout_s)
            except DatabaseError as exc:
                raise TransientError(str(exc)) from exc
            self._local.conn = conn
        return conn

    def drop(self) -> None:
        """Close this thread's connection (the next ``get`` opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.close()
            self._local.conn = None

    def lost(self, exc: psycopg2.Error) -> bool:
        """A server gone away shows as OperationalError, InterfaceError ("connection already
        closed") or a DatabaseError with no SQLSTATE ("server closed the connection
        unexpectedly"): all transient. An error the server answered with a code is not."""
        conn = getattr(self._local, "conn", None)
        lost = conn is None or bool(conn.closed) or exc.pgcode is None
        return lost or isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)

    def unavailable(self, exc: psycopg2.Error) -> TransientError:
        """The error to retry with, in one line. A conflict with another transaction (a
        deadlock, a serialization failure, a lock timeout: psycopg2 counts them operational
        errors) says so and keeps the connection, which the server left usable; anything
        else drops this thread's connection (the next ``get`` opens a new one)."""
        first = first_line(exc)
        conn = getattr(self._local, "conn", None)
        if (
            exc.pgcode in CONFLICTS
            and conn is not None
            and not conn.closed
            and conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        ):
            return TransientError(f"database conflict: {first}")
        self.drop()
        return TransientError(f"database unavailable: {first}")
