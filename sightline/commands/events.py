"""`sightline events parse FILE.json`: what the handler does with each record.

Any envelope the handler takes (S3, SQS, SNS, SNS in SQS, EventBridge, MinIO webhook body)
goes through the handler's own ``plan``: the very code path, minus the publish.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="upload events")
    esub = p.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    parse = esub.add_parser("parse", help="print the handler's action per record (JSON lines)")
    parse.add_argument("file", help="event JSON file (any envelope), or - for standard input")
    parse.set_defaults(func=parse_events)


def parse_events(args: argparse.Namespace) -> int:
    from handlers.config import HandlerConfig
    from handlers.core import plan

    try:
        # Bytes: json.loads decodes them, so bytes that are not UTF-8 are "not JSON" below.
        text = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{args.file}: not JSON ({exc})") from None
    except RecursionError:
        raise CliError(f"{args.file}: not an event (JSON nested too deep)") from None
    if not isinstance(event, dict):
        raise CliError(f"{args.file}: an event is a JSON object")
    try:
        config = HandlerConfig.from_env()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for action in plan(
        event,
        config.owners,
        allowed_buckets=config.allowed_buckets,
        opaque_keys=config.opaque_keys,
        exclude=config.exclude,
    ):
        print(json.dumps(action.to_json(), ensure_ascii=False))
    return 0
