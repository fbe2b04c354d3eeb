"""`sightline corrections export`: owners' hides and adds, for review and calibration."""

from __future__ import annotations

import argparse
import csv
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corrections", help="owners' album corrections")
    csub = p.add_subparsers(dest="corrections_command", metavar="ACTION", required=True)
    ex = csub.add_parser(
        "export",
        help="list corrections with the photo's model version and release "
        "(input to `sightline calibrate --corrections`)",
    )
    ex.add_argument("--kind", choices=("scene", "landmark"), help="only this kind")
    fmt = ex.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json",
        action="store_true",
        help="one JSON object a line; embedding a JSON array of floats",
    )
    fmt.add_argument(
        "--csv", action="store_true", help="CSV with a header row; embedding a JSON array as text"
    )
    ex.set_defaults(func=export)


def export(args: argparse.Namespace) -> int:
    from sightline.embedded import database_url
    from workers.corrections import FIELDS, embedding_text, export_corrections
    from workers.db import connect
    from workers.settings import Settings

    s = Settings.from_env()
    url, _server = database_url(s)
    conn = connect(url, timeout_s=max(s.db_timeout_s, 300))
    try:
        with conn, conn.cursor() as cur:
            rows = export_corrections(cur, args.kind)
    finally:
        conn.close()
    out = sys.stdout
    if args.json:
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    elif args.csv:
        w = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows({**r, "embedding": embedding_text(r["embedding"])} for r in rows)
    else:
        for r in rows:
            release = f" release {r['release']}" if r["release"] else ""
            out.write(
                f"{r['corrected_at'][:19]}  {r['owner']}  photo {r['photo_id']}  "
                f"{r['verdict']:4} {r['kind']} {r['label']!r}  model {r['model_version']}"
                f"{release}\n"
            )
        if not rows:
            out.write("no corrections\n")
    return 0
