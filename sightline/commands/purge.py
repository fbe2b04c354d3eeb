"""`sightline purge --owner X` (erasure) and `sightline purge --tombstones --older-than 30d`."""

from __future__ import annotations

import argparse
import json
import os

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "purge",
        help="erase an owner's rows, or old delete tombstones",
        description=(
            "--owner X removes the owner's photos (any status), scene and album rows, landmark "
            "matches and corrections. --tombstones removes delete tombstones older than "
            "--older-than, which must be at least the event redelivery window "
            "(SIGHTLINE_MAX_EVENT_AGE, default 15d) so the sequencer guard stays sound. "
            "Batches of --batch rows, one transaction each."
        ),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--owner", help="the owner whose data is erased")
    what.add_argument("--tombstones", action="store_true", help="deleted/gone rows")
    p.add_argument("--older-than", help="tombstone age, e.g. 30d, 720h")
    p.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    p.add_argument("--batch", type=int, default=1000, help="rows per transaction")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=purge)


def purge(args: argparse.Namespace) -> int:
    from sightline.embedded import database_url
    from workers.db import connect
    from workers.purge import (
        DEFAULT_MAX_EVENT_AGE,
        PurgeRefused,
        parse_age,
        purge_owner,
        purge_tombstones,
    )
    from workers.settings import Settings

    try:
        if args.tombstones:
            if not args.older_than:
                raise CliError("--tombstones needs --older-than (e.g. 30d)")
            try:
                older_than = parse_age(args.older_than)
            except ValueError as exc:
                raise CliError(f"--older-than: {exc}") from None
            raw = os.environ.get("SIGHTLINE_MAX_EVENT_AGE")
            try:
                window = parse_age(raw) if raw else DEFAULT_MAX_EVENT_AGE
            except ValueError as exc:
                raise CliError(f"SIGHTLINE_MAX_EVENT_AGE: {exc}") from None
        elif args.older_than:
            raise CliError("--older-than applies to --tombstones only")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    url, _server = database_url(Settings.from_env())
    conn = connect(url, register=False, timeout_s=300)
    try:
        if args.tombstones:
            counts = purge_tombstones(
                conn, older_than, max_event_age=window, batch=args.batch, dry_run=args.dry_run
            )
        else:
            counts = purge_owner(conn, args.owner, batch=args.batch, dry_run=args.dry_run)
    except PurgeRefused as exc:
        raise CliError(str(exc)) from None
    finally:
        conn.close()
    if args.json:
        print(json.dumps(counts.to_json()))
    else:
        verb = "would remove" if args.dry_run else "removed"
        whose = f"owner {args.owner}" if args.owner else f"tombstones older than {args.older_than}"
        print(
            f"{whose}: {verb} {counts.photos} photo(s), {counts.scenes} scene row(s), "
            f"{counts.albums} album row(s), {counts.matches} landmark match(es), "
            f"{counts.corrections} correction(s) in {counts.batches} batch(es)"
        )
    return 0
