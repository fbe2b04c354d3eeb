"""A throw-away database on the configured server (DATABASE_URL or the embedded one)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """Create a migrated database for a benchmark, drop it afterwards; yields its URL."""
    import psycopg2
    from psycopg2.extensions import make_dsn, parse_dsn

    from sightline.embedded import database_url
    from sightline.settings import Settings
    from workers import migrate

    base, _server = database_url(Settings.from_env())
    name = f"sightline_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = make_dsn(**{**parse_dsn(base), "dbname": name})
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
