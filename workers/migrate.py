"""Schema migrations from infra/migrations: recorded, idempotent, serialised by a lock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg2

from workers.db import DatabaseError, connect

# Any constant works; it only has to be the same in every sightline process.
_LOCK_ID = 0x5167_4C49_4E45


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("infra") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [Migration(f.name.removesuffix(".sql"), f.read_text()) for f in files]


# 0017 hash-partitions the photo tables by owner into this many partitions unless told.
DEFAULT_PHOTO_PARTITIONS = 8
# 0017 refuses more: with 0019 a default lock table (max_locks_per_transaction 64) ran out at 256.
MAX_PHOTO_PARTITIONS = 128


def up_to(until: str) -> list[Migration]:
    """The migrations up to ``until``, by number or full name (e.g. ``"0024"``), in order;
    DatabaseError for an unknown one."""
    chosen = available()
    last = [m for m in chosen if until in (m.version, m.version.split("_")[0])]
    if not last:
        raise DatabaseError(f"no migration {until!r}")
    return chosen[: chosen.index(last[0]) + 1]


def hold_schema(cur: Any) -> None:
    """Take the schema lock shared until this transaction ends: an ``upgrade`` (which holds
    it exclusively) in progress finishes first, and an upgrade that starts waits for this
    transaction. A write that calls the write functions takes it first, before it touches a
    table (waiting while it holds a lock an upgrade needs would deadlock), so no call runs
    a function's old body against a schema an upgrade has changed under it."""
    cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (_LOCK_ID,))


def upgrade(url: str, *, partitions: int | None = None, until: str | None = None) -> list[str]:
    """Apply the migrations not yet recorded; returns the versions applied now.

    Runs in one transaction under an advisory lock, so two processes upgrading at once
    apply each migration exactly once. A changed, already applied file is refused.

    ``partitions``: how many hash partitions (by owner) migration 0017 gives each photo
    table, 1..128 (None: the setting ``sightline.photo_partitions`` of the database or
    role, else DEFAULT_PHOTO_PARTITIONS, the default written in 0017). The count is recorded in
    ``schema_parameters``; asking for another count once 0017 has run raises DatabaseError
    (re-partitioning is a data move, not a migration).

    ``until``: apply only up to this migration, by number or full name (e.g. ``"0024"``: a
    database as that migration left it, to measure a later one against); an unknown one
    raises DatabaseError.
    """
    chosen = available() if until is None else up_to(until)
    if partitions is not None and not 1 <= partitions <= MAX_PHOTO_PARTITIONS:
        raise DatabaseError(f"partitions must be 1 to {MAX_PHOTO_PARTITIONS}, not {partitions}")
    conn = connect(url, register=False, timeout_s=300)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            if partitions is not None:
                # Read by 0017 (else a database or role setting of the same name, else 8).
                cur.execute(
                    "SELECT set_config('sightline.photo_partitions', %s, true)", (str(partitions),)
                )
                _check_partitions(cur, partitions)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version, checksum FROM schema_migrations")
            done = dict(cur.fetchall())
            applied = []
            for m in chosen:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise DatabaseError(
                            f"migration {m.version} changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                try:
                    cur.execute(m.sql)
                except psycopg2.Error as exc:
                    hint = pgvector_hint(exc, conn.server_version)
                    if hint:
                        raise DatabaseError(hint) from exc
                    raise
                cur.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                    (m.version, m.checksum),
                )
                applied.append(m.version)
            return applied
    finally:
        conn.close()


def _check_partitions(cur: Any, partitions: int) -> None:
    """Refuse a partition count other than the one 0017 recorded, once it has run."""
    cur.execute("SELECT to_regclass('schema_parameters') IS NOT NULL")
    if not cur.fetchone()[0]:
        return
    cur.execute("SELECT value FROM schema_parameters WHERE name = 'photo_partitions'")
    row = cur.fetchone()
    if row is not None and int(row[0]) != partitions:
        raise DatabaseError(
            f"the photo tables already have {row[0]} partitions by owner (set when migration "
            f"0017 ran), not {partitions}: the count cannot change by upgrading"
        )


def photo_partitions(url: str) -> int | None:
    """The photo tables' partition count recorded by 0017, or None before it ran."""
    conn = connect(url, register=False)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_parameters') IS NOT NULL")
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT value FROM schema_parameters WHERE name = 'photo_partitions'")
            row = cur.fetchone()
            return int(row[0]) if row else None
    finally:
        conn.close()


def pgvector_hint(exc: Exception, server_version: int) -> str | None:
    """One line saying what to install when a migration failed for want of pgvector, else None.

    ``server_version`` is libpq's number (150020 for 15.2). PostgreSQL answers a missing
    extension with SQLSTATE 0A000 'extension "vector" is not available' (15 to 18).
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if '"vector"' not in text:
        return None
    major = server_version // 10000
    if getattr(exc, "pgcode", None) == "0A000" or "not available" in text:
        return (
            f"pgvector is not installed on this PostgreSQL {major} server ({text}): install it "
            f"on the database host (Debian/Ubuntu: apt install postgresql-{major}-pgvector; "
            "RHEL: pgvector_" + str(major) + "; source: github.com/pgvector/pgvector), "
            "or unset DATABASE_URL to use the embedded PostgreSQL 18 with pgvector"
        )
    if getattr(exc, "pgcode", None) == "42501":  # insufficient_privilege
        return (
            f"cannot create the pgvector extension ({text}): have a superuser run "
            "CREATE EXTENSION vector; in this database once, then run db upgrade again"
        )
    return None


def applied(url: str) -> list[str]:
    conn = connect(url, register=False)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            if not cur.fetchone()[0]:
                return []
            cur.execute("SELECT version FROM schema_migrations ORDER BY version")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
