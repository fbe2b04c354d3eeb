"""The one command-line entry point: ``sightline <command>``.

Each command lives in ``sightline/commands/<module>.py`` with a ``register(subparsers)``;
heavy imports happen inside the command, so `sightline events parse` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Modules under sightline.commands, in --help order.
COMMAND_MODULES = (
    "demo",
    "worker",
    "db",
    "events",
    "photos",
    "scenes",
    "train",
    "eval",
    "explain",
    "landmarks",
    "retag",
    "backfill",
    "jobs",
    "status",
    "bench",
)


class CliError(Exception):
    """Bad input or a refused operation: one line on stderr, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sightline", description="Automatic scene and landmark tagging for a photo cloud."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"sightline.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("sightline: interrupted", file=sys.stderr)
        return 130
    except CliError as exc:
        print(f"sightline: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a bare traceback; SIGHTLINE_DEBUG=1 shows it
        if os.environ.get("SIGHTLINE_DEBUG"):
            raise
        known = {
            "DatabaseError",
            "CheckpointError",
            "ModelUnavailable",
            "SceneMapError",
            "ReleaseError",
            "ReleaseRefused",
            "JobError",
            "SourceError",
        }
        kind = type(exc).__name__
        print(
            f"sightline: error: {exc}" if kind in known else f"sightline: {kind}: {exc}",
            file=sys.stderr,
        )
        return 2 if kind in known else 1


if __name__ == "__main__":
    sys.exit(main())
