"""`sightline release diff|retire`: what a release changes, and the end of a model switch.
The database side is in workers/generations.py."""

from __future__ import annotations

import argparse
import json

from sightline.cli import CliError


def register(rsub: argparse._SubParsersAction) -> None:
    """Add ``diff`` and ``retire`` under ``sightline release``."""
    d = rsub.add_parser("diff", help="photos gained and lost per landmark from OLD to NEW")
    d.add_argument("old", help="release version matched from (e.g. the active one)")
    d.add_argument("new", help="release version matched to (re-tagged: ready or active)")
    d.add_argument("--top", type=int, default=10, help="landmarks listed (most changed first)")
    d.add_argument(
        "--json", action="store_true", help="print totals and top landmarks as one JSON object"
    )
    d.set_defaults(func=release_diff)
    r = rsub.add_parser(
        "retire", help="retire an old model's active release once none of its photos is left"
    )
    r.add_argument("version", help="the old model's active release")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r.set_defaults(func=release_retire)


def release_diff(args: argparse.Namespace) -> int:
    from sightline.commands.landmarks import release_db
    from workers.generations import release_diff as diff

    if args.top < 0:
        raise CliError("--top must be 0 or more")
    with release_db() as conn, conn, conn.cursor() as cur:
        out = diff(cur, args.old, args.new, top=args.top)
    if args.json:
        print(json.dumps(out))
        return 0
    t = out["totals"]
    print(
        f"{args.old} ({out['old']['status']}) -> {args.new} ({out['new']['status']}): "
        f"+{t['gained']} -{t['lost']} photo matches over {t['landmarks_changed']} landmarks "
        f"({t['matches_old']} -> {t['matches_new']})"
    )
    for r in out["top"]:
        print(
            f"  {r['landmark_id']:12} {r['name'] or '':30} +{r['gained']:<6} -{r['lost']:<6} "
            f"{r['photos_old']} -> {r['photos_new']}"
        )
    return 0


def release_retire(args: argparse.Namespace) -> int:
    from sightline.commands.landmarks import release_db
    from workers.generations import retire

    with release_db() as conn:
        out = retire(conn, args.version)
    if args.json:
        print(json.dumps(out))
    else:
        note = "retired" if out["retired"] else "was already retired"
        print(f"release {args.version} (model {out['model_version']}) {note}")
    return 0
