"""A throwaway database with the schema, on DATABASE_URL's server or the embedded one."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def scratch_database(base_url: str | None = None, prefix: str = "sightline_bench") -> Iterator[str]:
    """Create a database beside ``base_url``'s (default: the configured server), migrate it,
    yield its URL, then drop it."""
    from psycopg2.extensions import make_dsn, parse_dsn

    from sightline.embedded import database_url
    from workers import migrate
    from workers.db import connect
    from workers.settings import Settings

    server = None
    if base_url is None:
        base_url, server = database_url(Settings.from_env())
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = connect(base_url, register=False)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = make_dsn(**{**parse_dsn(base_url), "dbname": name})
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        del server  # the embedded server (if we started it) may stop now
