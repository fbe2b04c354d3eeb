"""`sightline config show`: the effective settings and where each value came from."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="the effective settings (sightline.toml, environment)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="each setting, its source and value, secrets masked")
    show.add_argument(
        "--json",
        action="store_true",
        help='print {"file", "settings": [{"name", "value", "source"}], "derived"} as JSON',
    )
    show.set_defaults(func=config_show)


def config_show(args: argparse.Namespace) -> int:
    import os

    from handlers.config import (
        FROM_FILE,
        HANDLER_DEFAULTS,
        HandlerConfig,
        config_path,
        mask,
        source,
    )
    from workers.settings import WORKER_DEFAULTS, Settings

    settings = Settings.from_env()  # the checks a worker runs at start: a bad value exits 2
    HandlerConfig.from_env()
    # What the worker derives from these (docs/operations.md, "Many GPU workers").
    derived = {"broker_transport_options": settings.transport_options()}
    path = config_path()
    file = str(path) if path else None
    rows = []
    known = {**WORKER_DEFAULTS, **HANDLER_DEFAULTS}
    # Others the file set (AWS_* for boto3, settings read elsewhere) are shown too.
    known.update({name: None for name in sorted(FROM_FILE) if name not in known})
    for name, default in known.items():
        where = source(name)
        value = default if where == "default" else os.environ.get(name)
        rows.append({"name": name, "value": mask(name, value), "source": where})
    if args.json:
        print(json.dumps({"file": file, "settings": rows, "derived": derived}))
        return 0
    print(f"settings file: {file or 'none'}")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        value = "(unset)" if r["value"] is None else r["value"]
        print(f"  {r['name']:{width}}  {r['source']:7}  {value}")
    print(f"derived: broker transport options {json.dumps(derived['broker_transport_options'])}")
    return 0
