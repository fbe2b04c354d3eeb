"""`sightline bench <name>`: benchmarks that print their figures (JSON with --json).

Each benchmark lives in ``sightline/benches/<name>.py`` with a ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib

# Modules under sightline.benches.
BENCH_MODULES: tuple[str, ...] = (
    "worker",
    "handler",
    "match",
    "retag",
    "writes",
    "publish",
    "soak",
    "albums",
    "backfill",
    "model_switch",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (speed and memory targets live here)")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for name in BENCH_MODULES:
        importlib.import_module(f"sightline.benches.{name}").register(bsub)
