"""`sightline db upgrade|status`: the schema migrations."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply pending migrations (idempotent, locked)")
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=upgrade)


def upgrade(args: argparse.Namespace) -> int:
    from sightline.embedded import database_url
    from workers import migrate
    from workers.settings import Settings

    url, _server = database_url(Settings.from_env())
    done = migrate.upgrade(url)
    if args.json:
        print(json.dumps({"applied": done, "current": migrate.applied(url)}))
    elif done:
        print(f"applied {len(done)} migration(s): {', '.join(done)}")
    else:
        print("database is up to date")
    return 0
