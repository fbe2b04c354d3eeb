"""`sightline retag`: re-match stored embeddings against a release, or re-file scene albums
under a new scene map, without the network.

By default the work goes to the fleet: a job row, photo-id chunks, one task per chunk on the
maintenance queue (workers/retag_fleet.py); `--local` runs it in this process instead."""

from __future__ import annotations

import argparse
import json

from sightline.cli import CliError

# `retag --json` prints {"release": {...}, "scene_map": {...}} (each key only for what was
# asked), the same keys in both modes; a key a mode cannot know is null (docs/landmarks.md).
RELEASE_KEYS = (
    "mode",  # "fleet" or "local"
    "release",  # the release version re-matched
    "status",  # the release's status when the command returned
    "replaced",  # the same model's release it replaced on activation, or null
    "state",  # local "done"; fleet: the job's state (running until --wait follows it)
    "photos",  # photos of the release's model to re-match
    "done",  # of those, re-matched so far
    "matches",  # (photo, landmark) matches written; fleet: null until --wait ends
    "seconds",  # wall time of the re-match; fleet: the job's, once it ended
    "photos_per_s",
    "resumed",  # a killed run (local cursor) or a live job (fleet) was continued
    "resumed_from",  # local: the photo id it continued after; fleet: null
    "job",  # fleet: the jobs row; local: null
    "chunks",  # fleet: the job's chunks, and those not yet done when this command ends
    "pending",
    "published",
    "error",  # a failed job's reason
)
SCENE_MAP_KEYS = (
    "mode",
    "version",  # the scene map version put in force
    "max_albums",  # K
    "thresholds",  # albums with a threshold of their own
    "state",
    "photos",  # photos to re-file
    "done",  # of those, re-filed so far
    "resumed",
    "job",
    "chunks",
    "pending",
    "published",
    "error",
)


def one_schema(keys: tuple[str, ...], **values: object) -> dict:
    """The JSON object of one part of `retag --json`: every key of ``keys`` in that order,
    null where not given. Raises KeyError for a value under a key not in ``keys``."""
    unknown = set(values) - set(keys)
    if unknown:
        raise KeyError(f"not in the retag --json schema: {sorted(unknown)}")
    return {k: values.get(k) for k in keys}


# Photos per batch of a --local re-tag, and per task of a fleet re-tag.
LOCAL_BATCH = 20_000
CHUNK = 10_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retag", help="re-tag stored photos without the network (resumable)")
    p.add_argument("--release", help="release version to re-match every stored embedding against")
    p.add_argument(
        "--scene-map",
        help="CSV places365_class,album[,threshold]: re-file scene albums (thresholds, K)",
    )
    p.add_argument(
        "--max-albums",
        type=int,
        help="K: scene albums per photo at most (default SIGHTLINE_ALBUMS_PER_PHOTO or 3)",
    )
    p.add_argument(
        "--batch-size", type=int, help=f"photos per batch (--local; default {LOCAL_BATCH:,})"
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="run in this process (resumable by its cursor) instead of on the fleet",
    )
    p.add_argument(
        "--chunk-size", type=int, help=f"photos per fleet task (not --local; default {CHUNK:,})"
    )
    p.add_argument(
        "--wait", action="store_true", help="follow the fleet job until it ends (not --local)"
    )
    p.add_argument(
        "--no-activate",
        action="store_true",
        help="leave the release 'ready' instead of switching the albums to it when complete",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar on stderr (default: a bar with --local or --wait)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the summary as one JSON object at the end"
    )
    p.set_defaults(func=retag)


def retag(args: argparse.Namespace) -> int:
    from sightline.embedded import database_url
    from workers.db import connect
    from workers.releases import ReleaseRefused
    from workers.retag import retag_release, retag_scenes
    from workers.scenemaps import install
    from workers.settings import Settings

    if not args.release and not args.scene_map:
        raise CliError("give --release VERSION, --scene-map FILE, or both")
    # An option of the other mode would be silently ignored: say so instead.
    if args.local and (args.chunk_size is not None or args.wait):
        raise CliError(
            "--chunk-size and --wait are for the fleet re-tag; --local runs here, "
            "in batches of --batch-size"
        )
    if not args.local and args.batch_size is not None:
        raise CliError("--batch-size is for --local; the fleet's tasks take --chunk-size")
    args.batch_size = LOCAL_BATCH if args.batch_size is None else args.batch_size
    args.chunk_size = CHUNK if args.chunk_size is None else args.chunk_size
    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    if args.max_albums is not None and args.max_albums < 1:
        raise CliError("--max-albums must be at least 1")
    if args.chunk_size < 1:
        raise CliError("--chunk-size must be at least 1")
    s = Settings.from_env()
    k = args.max_albums or s.albums_per_photo
    scene_map = None
    if args.scene_map:
        from models.scenes import SceneMap, SceneMapError, load_sift

        try:
            # The sift list in force for the workers (SIGHTLINE_SIFT), so re-filed photos
            # and newly tagged ones leave out the same classes.
            scene_map = SceneMap.load(args.scene_map, excluded=load_sift(s.sift))
        except OSError as exc:
            raise CliError(f"scene map {args.scene_map}: {exc.strerror or exc}") from None
        except SceneMapError as exc:  # its message starts "scene map …" already
            detail = str(exc).removeprefix("scene map ")
            raise CliError(f"scene map {args.scene_map}: {detail}") from None
    url, _server = database_url(s)
    if not args.local:
        from sightline.commands.retag_fleet import run_fleet

        return run_fleet(args, s, url, scene_map, k=k)
    conn = connect(url, timeout_s=max(s.db_timeout_s, 300))
    out: dict = {}
    try:
        if args.release:
            summary = retag_release(
                conn,
                args.release,
                batch_size=args.batch_size,
                progress=not args.no_progress,
                make_active=not args.no_activate,
            )
            r = summary.to_json()
            out["release"] = one_schema(
                RELEASE_KEYS,
                mode="local",
                release=r["release"],
                status=r["status"],
                replaced=r["replaced"],
                state="done",
                photos=r["photos"],
                done=r["photos"],
                matches=r["matches"],
                seconds=r["seconds"],
                photos_per_s=r["photos_per_s"],
                resumed=r["resumed_from"] > 0,
                resumed_from=r["resumed_from"],
            )
        if scene_map is not None:
            # In force first, then the re-file: workers file new photos by it from now on
            # (their writes check the version in force), the re-file does the photos before.
            version = install(conn, scene_map, f"retag --scene-map {args.scene_map}")
            photos = retag_scenes(conn, scene_map, progress=not args.no_progress, k=k)
            out["scene_map"] = one_schema(
                SCENE_MAP_KEYS,
                mode="local",
                version=version,
                max_albums=k,
                thresholds=len(scene_map.thresholds),
                state="done",
                photos=photos,
                done=photos,
                resumed=False,
            )
    except ReleaseRefused as exc:
        raise CliError(str(exc)) from None
    finally:
        conn.close()
    if args.json:
        print(json.dumps(out))
    if not args.json and "release" in out:
        r = out["release"]
        print(
            f"release {r['release']}: {r['photos']} photos re-matched, {r['matches']} matches, "
            f"{r['photos_per_s']} photos/s; status {r['status']}"
        )
    if not args.json and "scene_map" in out:
        m = out["scene_map"]
        print(f"scene map {m['version']} in force: {m['photos']} photos re-filed")
    return 0
