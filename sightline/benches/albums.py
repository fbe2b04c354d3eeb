"""`sightline bench albums`: album reads at library scale, and what keeping summaries costs.

Fills a scratch database by set-based SQL (generate_series, no per-row Python): --photos
photos, --owner-photos of them (every k-th id, interleaved with the rest) for one owner, the
others spread over 100-photo owners; 2 % failed and 1 % deleted; every tagged photo in one of
--albums scene albums (rank 1, a skewed draw so some are rare) plus a rank-2 one; 2 % of
tagged photos matched to one of 200 landmarks of the active release. Summaries and status
counters are then built in one pass, as the migration does for an existing database.

Prints, each the best of --repeat runs for the large owner: scene_albums_ms,
landmark_albums_ms, album_photos_rare_ms (first page of its rarest scene album),
album_photos_empty_ms (first page of a landmark album it has no photo in), status_ms (photos
counted by status, as `sightline status` does) and status_report_ms (everything `sightline
status` reads from Postgres: counts, failure reasons, last failures, releases); for
comparison the full-scan queries these replace (0011's scene_albums, a GROUP BY status) on
the same data; correction_ms, an owner's hide and its undo of the newest photo of the largest
album in one transaction (each recounts that album, in the correcting transaction); and the
write path's rows/s with the summary triggers on and off, in the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

OWNER = "heavy"
SUMMARY_TRIGGERS = {
    "photo_albums": (
        "photo_albums_summary_ins",
        "photo_albums_summary_del",
        "photo_albums_summary_upd",
    ),
    "landmark_matches": (
        "landmark_matches_summary_ins",
        "landmark_matches_summary_del",
        "landmark_matches_summary_upd",
    ),
}
# 0011's scene_albums, inlined: every album read aggregated the owner's membership (every
# album a photo is filed in, corrections applied) before summaries.
OLD_SCENE_ALBUMS = """
    SELECT m.label, count(*),
           (array_agg(m.photo_id ORDER BY m.sort_at DESC, m.photo_id DESC))[1],
           bool_or(NOT coalesce(m.model_trained, false))
    FROM album_membership m WHERE m.owner = %(owner)s AND m.kind = 'scene'
    GROUP BY m.label ORDER BY count(*) DESC, m.label"""
OLD_STATUS = "SELECT status, count(*) FROM photos GROUP BY status"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("albums", help="album reads and status at 1M photos; summary write cost")
    p.add_argument(
        "--photos", type=int, default=1_000_000, help="photos in the library (default 1000000)"
    )
    p.add_argument("--owner-photos", type=int, default=100_000, help="photos of the one owner")
    p.add_argument("--albums", type=int, default=90, help="scene albums")
    p.add_argument("--repeat", type=int, default=5, help="runs per read; the best is kept")
    p.add_argument("--writes", type=int, default=2000, help="photos per write-cost measurement")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _fill(conn: Any, photos: int, owner_photos: int, albums: int) -> None:
    """Set-based fill with the row triggers off, then summaries and counters in one pass."""
    every = max(1, photos // max(1, owner_photos))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT setseed(0.16)")
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status) "
            "VALUES ('bench', 512, 'bench-model', '{}', 'active')"
        )
        cur.execute(
            "INSERT INTO landmarks (release, landmark_id, name, city, country) "
            "SELECT 'bench', 'L' || g, 'Landmark ' || g, 'City ' || (g % 40), "
            "'Country ' || (g % 12) FROM generate_series(0, 200) g"  # L200: no photo
        )
        for table in ("photos", "photo_albums", "landmark_matches"):
            cur.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        cur.execute(
            """
            INSERT INTO photos (id, owner, bucket, key, status, error, taken_at, model_version,
                                model_trained, size, width, height)
            SELECT g,
                   CASE WHEN g %% %(every)s = 0 AND g / %(every)s <= %(owner_photos)s
                        THEN %(owner)s ELSE 'u' || (g / 100) END,
                   'bench', 'users/' || (g / 100) || '/' || g || '.jpg',
                   CASE WHEN g %% 50 = 7 THEN 'failed' WHEN g %% 100 = 13 THEN 'deleted'
                        ELSE 'tagged' END,
                   CASE WHEN g %% 50 = 7 THEN 'corrupt or truncated image: bench' END,
                   timestamptz '2015-01-01' + ((g::bigint * 7919) %% 315360000) * interval '1 s',
                   'bench-model', true, 3500000, 4000, 3000
            FROM generate_series(1, %(photos)s) g
            """,
            {"every": every, "owner_photos": owner_photos, "owner": OWNER, "photos": photos},
        )
        cur.execute("SELECT setval('photos_id_seq', %s)", (photos,))
        # Album k with probability ~ a 4th-power draw: album 0 common, the last ones rare.
        cur.execute(
            """
            INSERT INTO photo_albums (sort_at, photo_id, score, rank, trained, owner, album)
            SELECT p.taken_at, p.id, s.score, s.rank, true, p.owner, 'album' || s.k
            FROM (SELECT id, owner, taken_at,
                         floor(%(albums)s * power(random(), 4))::int AS k
                  FROM photos WHERE status = 'tagged') p,
                 LATERAL (VALUES (1::smallint, p.k, 0.6::real),
                                 (2::smallint, (p.k + 1) %% %(albums)s, 0.2::real))
                     AS s(rank, k, score)
            """,
            {"albums": albums},
        )
        cur.execute(
            "INSERT INTO landmark_matches (release, photo_id, landmark_id, score, owner, sort_at)"
            " SELECT 'bench', id, 'L' || (id % 200), 0.9, owner, taken_at FROM photos "
            "WHERE status = 'tagged' AND id % 50 = 1"
        )
        for table in ("photos", "photo_albums", "landmark_matches"):
            cur.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        cur.execute("SELECT sightline_album_summaries_rebuild()")
        cur.execute("SELECT sightline_status_counts_rebuild()")
        cur.execute("SELECT sightline_head_counts_rebuild()")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.autocommit = False


def _best_ms(conn: Any, fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        with conn, conn.cursor() as cur:
            t0 = time.perf_counter()
            fn(cur)
            best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 2)


def _reads(conn: Any, repeat: int) -> dict[str, Any]:
    from sightline import albums
    from sightline.status import database_report, photo_counts

    with conn, conn.cursor() as cur:
        scenes = albums.scene_albums(cur, OWNER)
    rare = min(scenes, key=lambda r: (r["photos"], r["album"]))
    large = max(scenes, key=lambda r: (r["photos"], r["album"]))

    def correct(cur: Any) -> None:
        args = (OWNER, large["cover_photo_id"], "scene", large["album"])
        cur.execute("SELECT * FROM hide_from_album(%s, %s, %s, %s)", args)
        cur.execute("SELECT undo_correction(%s, %s, %s, %s)", args)

    out: dict[str, Any] = {
        "scene_albums_ms": _best_ms(conn, lambda c: albums.scene_albums(c, OWNER), repeat),
        "landmark_albums_ms": _best_ms(conn, lambda c: albums.landmark_albums(c, OWNER), repeat),
        "album_photos_rare_ms": _best_ms(
            conn, lambda c: albums.album_photos(c, OWNER, "scene", rare["album"]), repeat
        ),
        "album_photos_empty_ms": _best_ms(
            conn, lambda c: albums.album_photos(c, OWNER, "landmark", "L200"), repeat
        ),
        "status_ms": _best_ms(conn, photo_counts, repeat),
        "status_report_ms": _best_ms(conn, database_report, repeat),
        "correction_ms": _best_ms(conn, correct, repeat),
        "largest_album_photos": large["photos"],
        "rare_album": rare["album"],
        "rare_album_photos": rare["photos"],
        "scene_albums": len(scenes),
    }
    out["full_scan_scene_albums_ms"] = _best_ms(
        conn, lambda c: c.execute(OLD_SCENE_ALBUMS, {"owner": OWNER}) or c.fetchall(), repeat
    )
    out["full_scan_status_ms"] = _best_ms(
        conn, lambda c: c.execute(OLD_STATUS) or c.fetchall(), repeat
    )
    return out


def _write_rate(url: str, conn: Any, n: int, tag: str, albums: int, summaries: bool) -> float:
    """rows/s of the worker's write path for the large owner, summary triggers on or off."""
    from sightline.benches.writes import _items, _write_all

    items = _items(n, f"albums-{tag}", 512, 365, seed=len(tag))
    for i, it in enumerate(items):
        it["owner"] = OWNER
        it["model_version"] = "bench-model"
        it["albums"] = [[f"album{i % albums}", 0.6], [f"album{(i + 1) % albums}", 0.2]]
        it["matches"] = [["bench", f"L{i % 200}", 0.9]] if i % 50 == 1 else []
    _set_summary_triggers(conn, summaries)
    seconds, _ = _write_all(url, items, 16, 1)
    return len(items) / seconds


def _set_summary_triggers(conn: Any, on: bool) -> None:
    with conn, conn.cursor() as cur:
        for table, names in SUMMARY_TRIGGERS.items():
            for name in names:
                cur.execute(f"ALTER TABLE {table} {'ENABLE' if on else 'DISABLE'} TRIGGER {name}")


def run(args: argparse.Namespace) -> int:
    from sightline.cli import CliError
    from sightline.stack import scratch_database
    from workers.db import connect
    from workers.settings import Settings

    if min(args.photos, args.owner_photos, args.albums, args.repeat, args.writes) < 1:
        raise CliError("--photos, --owner-photos, --albums, --repeat and --writes must be > 0")
    if args.owner_photos > args.photos:
        raise CliError("--owner-photos cannot exceed --photos")
    result: dict[str, Any] = {
        "photos": args.photos,
        "owner_photos": args.owner_photos,
        "albums": args.albums,
        "repeat": args.repeat,
    }
    with scratch_database() as url:
        conn = connect(url, timeout_s=3600)
        t0 = time.perf_counter()
        _fill(conn, args.photos, args.owner_photos, args.albums)
        result["fill_seconds"] = round(time.perf_counter() - t0, 1)
        result.update(_reads(conn, args.repeat))
        # Alternating rounds, best of three each: the shared machine's noise hits both sides.
        on, off = [], []
        _write_rate(url, conn, max(50, args.writes // 10), "warm", args.albums, True)
        for r in range(3):
            on.append(_write_rate(url, conn, args.writes, f"on{r}", args.albums, True))
            off.append(_write_rate(url, conn, args.writes, f"off{r}", args.albums, False))
        _set_summary_triggers(conn, True)
        result["write_rows_per_s_with_summaries"] = round(max(on), 1)
        result["write_rows_per_s_without_summaries"] = round(max(off), 1)
        result["write_rounds_with"] = [round(r, 1) for r in on]
        result["write_rounds_without"] = [round(r, 1) for r in off]
        result["write_photos"] = args.writes
        conn.close()
    result["database"] = "DATABASE_URL" if Settings.from_env().database_url else "embedded"
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:36} {v}")
    return 0
