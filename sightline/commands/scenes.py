"""`sightline scenes`: the scene map in force, per Places365 class (album label or none,
indoor or outdoor, left out by the sift list or not)."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenes", help="the scene map in force: Places365 class -> album label")
    p.add_argument("--map", help="scene-map CSV (default: SIGHTLINE_SCENE_MAP or the shipped one)")
    p.add_argument(
        "--sift", help="sift list, or 'none' (default: SIGHTLINE_SIFT or the shipped list)"
    )
    p.add_argument("--json", action="store_true", help='{"<class>": {"album", "indoor", ...}}')
    p.set_defaults(func=show_scenes)


def show_scenes(args: argparse.Namespace) -> int:
    from models.scenes import SceneMap, load_sift
    from workers.settings import Settings

    s = Settings.from_env()
    sm = SceneMap.load(args.map or s.scene_map, excluded=load_sift(args.sift or s.sift))
    described = sm.describe()
    if args.json:
        print(json.dumps(described))
        return 0
    by_album: dict[str, list[str]] = defaultdict(list)
    for name, row in described.items():
        key = row["album"] or ("(sift: not predicted)" if row["excluded"] else "(no album)")
        by_album[str(key)].append(name)
    kept = sum(1 for r in described.values() if not r["excluded"])
    print(f"{len(described)} classes, {kept} predicted, {len(sm.albums)} albums")
    for album in sorted(by_album, key=lambda a: (a.startswith("("), a)):
        print(f"{album:24} {', '.join(by_album[album])}")
    return 0
