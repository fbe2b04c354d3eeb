"""`sightline scenes`: the scene map in force, per Places365 class (album label or none,
indoor or outdoor, left out by the sift list or not)."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sightline.cli import CliError

if TYPE_CHECKING:
    from models.scenes import SceneMap


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenes", help="the scene map in force: Places365 class -> album label")
    p.add_argument(
        "--map",
        help="show this scene-map CSV instead (default: the map stored in the database and in "
        "force for the workers; without one, SIGHTLINE_SCENE_MAP or the shipped CSV)",
    )
    p.add_argument(
        "--sift", help="sift list, or 'none' (default: SIGHTLINE_SIFT or the shipped list)"
    )
    p.add_argument("--json", action="store_true", help='{"<class>": {"album", "indoor", ...}}')
    p.set_defaults(func=show_scenes)


def load_scene_map(map_path: str | None, sift_path: str | None) -> SceneMap:
    """The scene map at ``map_path`` with the sift list at ``sift_path`` (None: the shipped
    ones; a sift of 'none' leaves no class out). Raises CliError, one line naming the file:
    unreadable, or not a scene map / sift list of the Places365 classes."""
    from models.scenes import SceneMap, SceneMapError, load_sift

    try:
        excluded = load_sift(sift_path)
    except (OSError, ValueError, SceneMapError) as exc:
        raise _refusal("sift list", sift_path, exc) from None
    try:
        return SceneMap.load(map_path, excluded=excluded)
    except (OSError, ValueError, SceneMapError) as exc:
        raise _refusal("scene map", map_path, exc) from None


def _refusal(what: str, path: str | None, exc: Exception) -> CliError:
    if isinstance(exc, OSError):
        detail = f"cannot read: {exc.strerror or exc}"
    elif isinstance(exc, UnicodeDecodeError):
        detail = "not UTF-8 text"
    else:  # SceneMapError's text starts "scene map …" or "sift list …" already
        detail = str(exc).removeprefix(f"{what} ")
    return CliError(f"{what} {path or '(shipped)'}: {detail}")


def stored_scene_map(settings: Any) -> tuple[SceneMap, str] | None:
    """The map in force for the workers (``sightline retag --scene-map`` or the first worker
    stored it) over the Places365 classes, and a line saying which; None when the database
    stores none yet. Raises DatabaseError when the database cannot be reached."""
    from models.scenes import load_categories
    from sightline.embedded import database_url
    from sightline.status import scene_map as in_force
    from workers.db import connect
    from workers.scenemaps import load

    url, _server = database_url(settings)
    conn = connect(url, register=False)
    try:
        with conn, conn.cursor() as cur:
            now = in_force(cur)
            if now is None:
                return None
            stored = load(cur, now["version"])
    finally:
        conn.close()
    sm = stored.for_categories(load_categories(), frozenset())
    return sm, f"scene map {now['version']} in force ({now['source']})"


def show_scenes(args: argparse.Namespace) -> int:
    from workers.settings import Settings

    s = Settings.from_env()
    found = None
    if not args.map and not args.sift:  # the map the workers file by, when one is stored
        from sightline.cli import report_warning
        from workers.db import DatabaseError

        try:
            found = stored_scene_map(s)
        except DatabaseError as exc:  # no database to ask: the file map, said so
            first = (str(exc).splitlines() or [""])[0]
            report_warning(f"{first}; showing the scene-map file, not a stored map")
    if found is None:
        sm = load_scene_map(args.map or s.scene_map, args.sift or s.sift)
        source = f"scene map {args.map or s.scene_map or '(shipped)'} (a file)"
    else:
        sm, source = found
    described = sm.describe()
    if args.json:
        print(json.dumps(described))
        return 0
    by_album: dict[str, list[str]] = defaultdict(list)
    for name, row in described.items():
        key = row["album"] or ("(sift: not predicted)" if row["excluded"] else "(no album)")
        by_album[str(key)].append(name)
    kept = sum(1 for r in described.values() if not r["excluded"])
    print(f"{source}: {len(described)} classes, {kept} predicted, {len(sm.albums)} albums")
    for album in sorted(by_album, key=lambda a: (a.startswith("("), a)):
        print(f"{album:24} {', '.join(by_album[album])}")
    return 0
