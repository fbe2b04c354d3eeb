"""Schema migrations from infra/migrations: recorded, idempotent, serialised by a lock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

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


def upgrade(url: str) -> list[str]:
    """Apply the migrations not yet recorded; returns the versions applied now.

    Runs in one transaction under an advisory lock, so two processes upgrading at once
    apply each migration exactly once. A changed, already applied file is refused.
    """
    conn = connect(url, register=False, timeout_s=300)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version, checksum FROM schema_migrations")
            done = dict(cur.fetchall())
            applied = []
            for m in available():
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
