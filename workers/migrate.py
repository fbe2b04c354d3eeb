"""Schema migrations from infra/migrations: recorded, idempotent, serialised by a lock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

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
                cur.execute(m.sql)
                cur.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                    (m.version, m.checksum),
                )
                applied.append(m.version)
            return applied
    finally:
        conn.close()


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
