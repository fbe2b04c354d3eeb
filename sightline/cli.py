"""The one command-line entry point: ``sightline <command>``.

Each command lives in ``sightline/commands/<module>.py`` with a ``register(subparsers)``;
heavy imports happen inside the command, so `sightline events parse` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

# Modules under sightline.commands, in --help order.
COMMAND_MODULES = (
    "demo",
    "worker",
    "consume",
    "db",
    "events",
    "photos",
    "corrections",
    "scenes",
    "train",
    "weights",
    "eval",
    "explain",
    "landmarks",
    "retag",
    "backfill",
    "jobs",
    "purge",
    "status",
    "config",
    "bench",
)


class CliError(Exception):
    """Bad input or a refused operation: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors in one line, like every other refusal (the usage is
    what --help prints). Sub-command parsers are made of the same class."""

    def error(self, message: str) -> NoReturn:
        _say(f"sightline: error: {message} (see: {self.prog} --help)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sightline", description="Automatic scene and landmark tagging for a photo cloud."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"sightline.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from handlers.config import SettingsError, apply_file

    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0].startswith("-") and given[0] not in ("-h", "--help"):
        # argparse would report the missing COMMAND, not the option it does not know
        parser.error(f"unrecognized arguments: {given[0]} (a COMMAND comes first)")
    args = parser.parse_args(given)
    try:
        apply_file()  # sightline.toml fills what the environment leaves unset
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _say("sightline: interrupted")
        return 130
    except (CliError, SettingsError) as exc:
        _say(f"sightline: error: {one_line(exc)}")
        return 2
    except Exception as exc:  # never a bare traceback; SIGHTLINE_DEBUG=1 shows it
        if os.environ.get("SIGHTLINE_DEBUG"):
            raise
        if isinstance(exc, OSError) and exc.filename:
            # a file the command reads or writes (an --out into a missing folder, say)
            _say(f"sightline: error: {exc.filename}: {exc.strerror or exc}")
            return 2
        known = {
            "DatabaseError",
            "CheckpointError",
            "WeightsImportError",
            "ModelUnavailable",
            "SceneMapError",
            "ReleaseError",
            "ReleaseRefused",
            "JobError",
            "SourceError",
            "DataError",
        }
        kind = type(exc).__name__
        text = one_line(exc)
        _say(f"sightline: error: {text}" if kind in known else f"sightline: {kind}: {text}")
        return 2 if kind in known else 1


_RAISED_IN = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(?:[A-Za-z_]\w*): ")


def one_line(exc: BaseException) -> str:
    """An error's message in one line: the first (a server's error adds HINT and CONTEXT
    lines, which SIGHTLINE_DEBUG shows), or, for an error re-raised from a DataLoader
    worker process ("Caught DataError in DataLoader worker process 4." and the worker's
    traceback), the original error's own last line without its class name."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    if len(lines) > 1 and lines[1].startswith("Original Traceback"):
        return _RAISED_IN.sub("", lines[-1].strip(), count=1)
    if len(lines) > 1 and lines[0].rstrip().endswith(":"):
        # a heading with its reason below ("Parameter validation failed:\nInvalid bucket…")
        return f"{lines[0].rstrip()} {lines[1].strip()}"
    return lines[0]


def report_error(message: str) -> None:
    """``sightline: error: MESSAGE`` on stderr, as main() prints a CliError: for a command
    that goes on after an error (one bad photo of many) or ends without raising."""
    _say(f"sightline: error: {message}")


def report_warning(message: str) -> None:
    """``sightline: warning: MESSAGE`` on stderr: something the command worked around."""
    _say(f"sightline: warning: {message}")


def _say(line: str) -> None:
    """An error line on stderr; a JSON line when SIGHTLINE_LOG_FORMAT=json."""
    if (os.environ.get("SIGHTLINE_LOG_FORMAT") or "").strip().lower() == "json":
        from workers.logs import json_line

        line = json_line("ERROR", "sightline", line)
    print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
