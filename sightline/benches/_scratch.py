"""A throwaway database with the schema, on DATABASE_URL's server or the embedded one."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def scratch_database(base_url: str, prefix: str = "sightline_bench") -> Iterator[str]:
    """Create a database beside ``base_url``'s, migrate it, yield its URL, then drop it."""
    from workers import migrate
    from workers.db import connect

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = connect(base_url, register=False)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    head, _, query = base_url.partition("?")
    url = f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    try:
        migrate.upgrade(url)
        yield url
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
