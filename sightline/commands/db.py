"""`sightline db upgrade|serve|url|stop`: the schema migrations and the embedded Postgres."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema and the embedded Postgres")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply pending migrations (idempotent, locked)")
    up.add_argument(
        "--json", action="store_true", help='print {"applied": [...], "current": [...]} as JSON'
    )
    up.add_argument(
        "--partitions",
        type=int,
        default=None,
        metavar="N",
        help="hash partitions by owner for each photo table when migration 0017 runs "
        "(1-128, default 8; recorded, cannot change later)",
    )
    up.set_defaults(func=upgrade)
    sv = dsub.add_parser(
        "serve",
        help="run the embedded PostgreSQL 18 + pgvector in the data folder",
        description=(
            "Start (or join) the embedded server in $SIGHTLINE_DATA_DIR/pg18 and print its URL. "
            "In the foreground it runs until SIGTERM or Ctrl-C; with --detach it keeps running "
            "after this command exits, until `sightline db stop`."
        ),
    )
    sv.add_argument("--detach", action="store_true", help="leave it running and return")
    sv.set_defaults(func=serve)
    url = dsub.add_parser(
        "url", help="the database URL sightline uses: DATABASE_URL, else the embedded server's"
    )
    url.set_defaults(func=print_url)
    st = dsub.add_parser("stop", help="stop the embedded server (also one left by --detach)")
    st.set_defaults(func=stop)


def upgrade(args: argparse.Namespace) -> int:
    from sightline.embedded import database_url
    from workers import migrate
    from workers.settings import Settings

    # before database_url, which may start the embedded server: the input first
    if args.partitions is not None and not 1 <= args.partitions <= migrate.MAX_PHOTO_PARTITIONS:
        raise CliError(
            f"--partitions must be 1 to {migrate.MAX_PHOTO_PARTITIONS}, not {args.partitions}"
        )
    url, _server = database_url(Settings.from_env())
    try:
        done = migrate.upgrade(url, partitions=args.partitions)
    except migrate.DatabaseError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(
            json.dumps(
                {
                    "applied": done,
                    "current": migrate.applied(url),
                    "photo_partitions": migrate.photo_partitions(url),
                }
            )
        )
    elif done:
        print(f"applied {len(done)} migration(s): {', '.join(done)}")
    else:
        print("database is up to date")
    return 0


def serve(args: argparse.Namespace) -> int:
    from sightline.embedded import KEEP_FLAG, default_pgdata, embedded_postgres, running_url

    pgdata = default_pgdata()
    if args.detach:
        server = embedded_postgres(keep_running=True)
        (pgdata / KEEP_FLAG).touch()
        print(server.get_uri(), flush=True)
        print(f"embedded Postgres left running in {pgdata}; stop: sightline db stop",
              file=sys.stderr)  # fmt: skip
        return 0
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = embedded_postgres()
    print(server.get_uri(), flush=True)
    print(f"embedded Postgres serving from {pgdata}; Ctrl-C or SIGTERM stops it", file=sys.stderr)
    while not stopping.wait(1.0):
        if running_url(pgdata) is None:  # killed, or `sightline db stop`: say so and end
            raise CliError(f"the embedded Postgres in {pgdata} stopped")
    # Stops the server unless another process still uses it, or a --detach asked to keep it.
    server.cleanup()
    print("embedded Postgres: this handle closed", file=sys.stderr)
    return 0


def print_url(args: argparse.Namespace) -> int:
    from sightline.embedded import default_pgdata, running_url
    from workers.settings import Settings

    settings = Settings.from_env()
    if settings.database_url:
        print(settings.database_url)
        return 0
    url = running_url()
    if url is None:
        raise CliError(
            f"DATABASE_URL is not set and no embedded Postgres is running in {default_pgdata()}: "
            "start one with `sightline db serve --detach`"
        )
    print(url)
    return 0


def stop(args: argparse.Namespace) -> int:
    from sightline.embedded import default_pgdata, stop_embedded

    if stop_embedded():
        print(f"embedded Postgres in {default_pgdata()} stopped", file=sys.stderr)
    else:
        print(f"no embedded Postgres was running in {default_pgdata()}", file=sys.stderr)
    return 0
