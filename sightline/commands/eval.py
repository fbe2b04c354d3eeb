"""`sightline eval <what>`: evaluations that print their metrics (JSON with --json).

Each lives in ``sightline/evals/<name>.py`` with a ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib

# Modules under sightline.evals.
EVAL_MODULES: tuple[str, ...] = ("scenes", "landmarks")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="offline evaluation: scene errors, landmark metrics")
    esub = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    for name in EVAL_MODULES:
        importlib.import_module(f"sightline.evals.{name}").register(esub)
