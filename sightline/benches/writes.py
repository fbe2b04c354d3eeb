"""`sightline bench writes`: the worker's write path alone, in rows/s, and bytes per photo.

Tagged photos as the worker writes them (512-d embedding, 365 scene probabilities, top-5
scenes, album labels, EXIF facts) go through the worker's set-based path (binary COPY into a
staging table, one guarded upsert: ``workers.photo_copy``) in batches, from 1..N connections
at once (as N worker batch threads would). On one connection, in the same run, the same
number of photos also go through the previous path (``sightline_write_photos``, one
sub-transaction per photo) for ``previous_rows_per_s_per_connection`` and the ``ratio``. Then
the stored size per photo and how fast the embeddings read back (what a re-tag reads).
``bytes_per_photo`` is the tables' size over the photos stored (with every partition's fixed
first pages); ``bytes_per_photo_marginal`` is what ``--marginal-photos`` more photos added,
the cost of each further photo in a large library.
``--stages 16,64,256`` also splits the staged path's time per row into its stages (Python
encoding, staging, COPY, the upsert, commit) at each batch size.

The warm-up writes its photos twice (the second pass warms the COPY path), which leaves one
dead version of each warm row and its tags; the photo tables are VACUUMed after it, as
autovacuum does in a running library, so the measured writes reuse that space and
``bytes_per_photo`` is what live photos take (``bytes_per_photo_by_relation`` says where:
each table's heap and TOAST, each index, summed over partitions).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from statistics import median
from typing import Any

from sightline.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("writes", help="write path rows/s per connection count; bytes per photo")
    p.add_argument("--photos", type=int, default=2000, help="photos per measurement")
    p.add_argument("--batch-size", type=int, default=16, help="photos per write batch (default 16)")
    p.add_argument("--connections", default="1,2,4", help="comma-separated connection counts")
    p.add_argument(
        "--marginal-photos",
        type=int,
        default=10_000,
        help="photos written last for bytes_per_photo_marginal (default 10,000: index pages "
        "are allocated in steps, so a few thousand photos may land in free space already there)",
    )
    p.add_argument("--dim", type=positive_int, default=512, help="embedding width")
    p.add_argument(
        "--classes", type=positive_int, default=365, help="scene probabilities per photo"
    )
    p.add_argument(
        "--owner-ids",
        choices=("short", "uuid"),
        default="short",
        help="owner names: short (user12, the default) or uuid (36 characters); owner is in "
        "every key and in each photo's key prefix, so its length shows in bytes_per_photo",
    )
    p.add_argument(
        "--stages",
        default=None,
        metavar="SIZES",
        help="also time the staged path's stages (Python encoding, staging, COPY, the "
        "upsert, commit) per row at these comma-separated batch sizes, e.g. 16,64,256",
    )
    p.add_argument(
        "--paired-with",
        default=None,
        metavar="MIGRATION",
        help="also write the same batches alternately into a database migrated only up to "
        "MIGRATION (e.g. 0024) and into one at the head, and print their rows/s and ratio: "
        "a migration's write cost measured in one run",
    )
    p.add_argument(
        "--paired-rounds", type=int, default=20, help="rounds of --paired-with (8 batches each)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


# The tables a photo's write fills (with their indexes and TOAST), summed for bytes_per_photo.
_TABLES = (
    "photos",
    "photo_scene_sets",
    "photo_albums",
    "landmark_matches",
    "album_summaries",
    "photo_status_counts",
    "photo_head_counts",
)


def relation_sizes(cur: Any, tables: tuple[str, ...]) -> dict[str, int]:
    """Bytes on disk per table ("t (heap)", "t (toast)") and per index ("t index_name").

    A partitioned table has no storage of its own: its partitions are summed under the
    parent's name, and a partitioned index under the parent index's name. Every fork is
    counted (main, free space map, visibility map), so the values sum to
    pg_total_relation_size over every partition.
    """
    out: dict[str, int] = {}
    leaves = (
        "SELECT coalesce((SELECT array_agg(t.relid) FROM pg_partition_tree(%s::regclass) t"
        " WHERE t.isleaf), ARRAY[%s::regclass])"
    )
    for table in tables:
        cur.execute(leaves, (table, table))
        rels = cur.fetchone()[0]
        cur.execute(
            "SELECT coalesce(sum(pg_table_size(c.oid)"
            "  - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)), 0),"
            " coalesce(sum(pg_total_relation_size(nullif(c.reltoastrelid, 0))), 0)"
            " FROM pg_class c WHERE c.oid = ANY(%s::regclass[])",
            (rels,),
        )
        heap, toast = cur.fetchone()
        out[f"{table} (heap)"] = int(heap)
        out[f"{table} (toast)"] = int(toast)
        cur.execute(
            "SELECT i.indexrelid::regclass::text FROM pg_index i"
            " WHERE i.indrelid = %s::regclass ORDER BY 1",
            (table,),
        )
        for (name,) in cur.fetchall():
            cur.execute(leaves, (name, name))
            idx = cur.fetchone()[0]
            cur.execute(
                "SELECT coalesce(sum(pg_total_relation_size(i)), 0) FROM unnest(%s::regclass[]) i",
                (idx,),
            )
            out[f"{table} {name}"] = int(cur.fetchone()[0])
    return out


def _vacuum(url: str) -> None:
    """VACUUM the photo tables, as autovacuum does in a running library."""
    from workers.db import connect

    conn = connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM " + ", ".join(_TABLES))
    conn.close()


def _owners(kind: str) -> list[str]:
    """The bench's 97 owners: ``short`` (user0..user96) or ``uuid`` (36 characters, as many
    photo services name their users; owner is in every key of the photo tables)."""
    if kind == "uuid":
        return [str(uuid.UUID(bytes=hashlib.md5(f"owner{j}".encode()).digest(), version=4))
                for j in range(97)]  # fmt: skip
    return [f"user{j}" for j in range(97)]


def _items(
    n: int, prefix: str, dim: int, classes: int, seed: int, owner_ids: str = "short"
) -> list[dict[str, Any]]:
    import numpy as np

    from models.scenes import load_categories

    # The stored top-5 rows carry class names, so their real lengths (Places365: 11 characters
    # on average) are what the bytes per photo must be measured with.
    names = load_categories() if classes == 365 else [f"class{j}" for j in range(classes)]
    rng = np.random.default_rng(seed)
    # S3 ETags are MD5 hex (incompressible) and the worker records a trained model as
    # version+sha12 (models.checkpoint): with a counter as ETag and "bench" as the model, the
    # photo row compressed just under the TOAST threshold and stayed whole on its page,
    # which real rows do not (docs/operations.md, "Real strings").
    etags = [rng.bytes(16).hex() for _ in range(n)]
    model = "scene+" + hashlib.sha256(b"bench").hexdigest()[:12]
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    probs = rng.dirichlet(np.full(classes, 0.1), size=n).astype(np.float32)
    owners = _owners(owner_ids)
    out = []
    for i in range(n):
        top = np.argsort(-probs[i])[:5]
        out.append(
            {
                "owner": owners[i % 97],
                "bucket": "bench",
                "key": f"{prefix}/users/{owners[i % 97]}/{i:09d}.jpg",
                "version_id": None,
                "etag": etags[i],
                "size": 3_500_000,
                "sequencer": f"{i:016X}".ljust(64, "0"),
                "event_time": "2024-05-01T10:15:00+00:00",
                "status": "tagged",
                "error": None,
                "taken_at": "2024-05-01T10:15:00+00:00",
                "taken_at_local": None,
                "gps_lat": 48.85 + (i % 100) / 1000,
                "gps_lon": 2.29,
                "width": 4000,
                "height": 3000,
                "camera": "SightlineCam Demo 1",
                "model_version": model,
                "model_trained": False,
                "embedding": emb[i].tolist(),
                "scene_probs": probs[i].tolist(),
                "indoor": 0.2,
                "scenes": [[names[j], float(probs[i, j])] for j in top],
                "albums": [["forest", float(probs[i, top[0]])], ["mountain", 0.1]],
                "matches": [],
            }
        )
    return out


def _write_all(
    url: str, items: list[dict], batch: int, connections: int, path: str = "copy"
) -> tuple[float, list[float]]:
    """Write every item in batches over N connections; (wall seconds, seconds per batch)."""
    from workers.db import connect
    from workers.photo_copy import write_photos_copy
    from workers.store import write_photos

    write = write_photos_copy if path == "copy" else write_photos
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    conns = [connect(url) for _ in range(connections)]
    latencies: list[float] = []

    def work(k: int) -> None:
        conn = conns[k]
        for b in batches[k::connections]:
            t0 = time.perf_counter()
            with conn, conn.cursor() as cur:
                results = write(cur, b)
            latencies.append(time.perf_counter() - t0)
            if any(o != "tagged" for _, o in results):
                raise RuntimeError(f"write refused: {results}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(work, range(connections)))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return elapsed, latencies


def _stages(url: str, items: list[dict], batch: int) -> dict[str, Any]:
    """The staged path's stages, as ``workers.photo_copy.write_photos_copy`` runs them, in
    microseconds per row: ``encode`` (Python: the binary COPY buffer), ``stage`` (the
    staging table emptied, a savepoint), ``copy``, ``upsert`` (``sightline_write_staged``:
    photos, their scenes, albums and matches, album summaries) and ``commit``."""
    import io

    from workers import photo_copy as pc
    from workers.db import connect

    spent = dict.fromkeys(("encode", "stage", "copy", "upsert", "commit"), 0.0)
    conn = connect(url)
    t_all = time.perf_counter()
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        with conn, conn.cursor() as cur:
            t0 = time.perf_counter()
            data = pc._SIGNATURE + pc.encode_rows(chunk) + pc._TRAILER
            t1 = time.perf_counter()
            cur.execute(f"{pc.STAGE_DDL}; DELETE FROM sightline_stage; SAVEPOINT sightline_staged")
            t2 = time.perf_counter()
            cur.copy_expert(
                f"COPY sightline_stage ({pc._COLUMNS}) FROM STDIN (FORMAT binary)",
                io.BytesIO(data),
            )
            t3 = time.perf_counter()
            cur.execute("SELECT idx, photo_id, outcome FROM sightline_write_staged()")
            if any(o != "tagged" for _, _, o in cur.fetchall()):
                raise RuntimeError("the staged upsert refused a bench row")
            t4 = time.perf_counter()
        t5 = time.perf_counter()
        for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            spent[name] += seconds
    total = time.perf_counter() - t_all
    conn.close()
    return {
        "batch_size": batch,
        "rows_per_s": round(len(items) / total, 1),
        "us_per_row": {k: round(v * 1e6 / len(items), 1) for k, v in spent.items()},
    }


def _paired(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    from sightline.benches._paired import paired_writes
    from sightline.cli import CliError
    from workers.db import DatabaseError

    def items(r: int) -> list[dict[str, Any]]:
        return _items(
            args.batch_size * 8, f"paired{r}", args.dim, args.classes, 500 + r, args.owner_ids
        )

    try:
        return paired_writes(base_url, args.paired_with, items, args.batch_size, args.paired_rounds)
    except (DatabaseError, RuntimeError) as exc:
        raise CliError(f"--paired-with {args.paired_with}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from sightline.cli import CliError
    from sightline.embedded import database_url
    from sightline.stack import scratch_database
    from workers.db import connect
    from workers.settings import Settings

    try:
        counts = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        raise CliError("--connections takes comma-separated integers, e.g. 1,2,4") from None
    if not counts or min(counts) < 1 or min(args.photos, args.batch_size) < 1:
        raise CliError("--photos, --batch-size and --connections must be positive")
    if args.marginal_photos < 1:
        raise CliError("--marginal-photos must be positive")
    try:
        stage_sizes = [int(c) for c in (args.stages or "").split(",") if c.strip()]
    except ValueError:
        raise CliError("--stages takes comma-separated batch sizes, e.g. 16,64,256") from None
    if stage_sizes and min(stage_sizes) < 1:
        raise CliError("--stages takes positive batch sizes")
    if args.paired_rounds < 1:
        raise CliError("--paired-rounds must be positive")
    if args.paired_with is not None:
        from workers.db import DatabaseError
        from workers.migrate import available, up_to

        try:
            up_to(args.paired_with)  # refused now, not after the bench's first minute
        except DatabaseError:
            numbers = [m.version.split("_")[0] for m in available()]
            raise CliError(
                f"--paired-with takes a migration number, {numbers[0]}..{numbers[-1]}"
            ) from None
    base_url, _server = database_url(Settings.from_env())
    result: dict[str, Any] = {"photos": args.photos, "batch_size": args.batch_size, "runs": []}
    with scratch_database(base_url) as url:
        # A first pass fills caches and the sequences; its rows stay for the size figure.
        warm = _items(args.photos, "warm", args.dim, args.classes, 0, args.owner_ids)
        _write_all(url, warm, args.batch_size, 1, "function")
        _write_all(url, warm, args.batch_size, 1, "copy")  # rewrites: warms the COPY path
        _vacuum(url)
        total = len(warm)
        per_path = {}
        for path in ("function", "copy"):
            items = _items(args.photos, f"cmp-{path}", args.dim, args.classes, 7, args.owner_ids)
            seconds, _ = _write_all(url, items, args.batch_size, 1, path)
            per_path[path] = len(items) / seconds
            total += len(items)
        result.update(
            {
                "write_path": "copy",
                "rows_per_s_per_connection": round(per_path["copy"], 1),
                "previous_rows_per_s_per_connection": round(per_path["function"], 1),
                "ratio": round(per_path["copy"] / per_path["function"], 2),
            }
        )
        for n, c in enumerate(counts, 1):
            items = _items(args.photos, f"run{n}", args.dim, args.classes, n, args.owner_ids)
            t0 = time.perf_counter()
            json.dumps(items)  # the client's share: serialising the batch payloads
            encode_s = time.perf_counter() - t0
            seconds, latencies = _write_all(url, items, args.batch_size, c)
            total += len(items)
            result["runs"].append(
                {
                    "connections": c,
                    "rows_per_s": round(len(items) / seconds, 1),
                    "batch_ms_median": round(median(latencies) * 1000, 2),
                    "json_encode_ms_per_photo": round(encode_s * 1000 / len(items), 3),
                }
            )
        if stage_sizes:
            result["stages"] = []
        for n, size in enumerate(stage_sizes, 1):
            items = _items(
                args.photos, f"stages{n}", args.dim, args.classes, 100 + n, args.owner_ids
            )
            result["stages"].append(_stages(url, items, size))
            total += len(items)
        if args.paired_with is not None:
            result["paired"] = _paired(base_url, args)
        conn = connect(url)
        with conn, conn.cursor() as cur:
            breakdown = relation_sizes(cur, _TABLES)
        size = sum(breakdown.values())
        # What one more photo costs at this size: the average above also carries each empty
        # partition's first pages (fixed, about 8 KB an index partition), which a library of
        # 10^9 photos does not feel. Measured on fresh photos after everything above.
        more = _items(args.marginal_photos, "marginal", args.dim, args.classes, 999, args.owner_ids)
        _write_all(url, more, args.batch_size, 1, "copy")
        with conn, conn.cursor() as cur:
            grown = relation_sizes(cur, _TABLES)
        marginal = (sum(grown.values()) - size) / len(more)
        photos_size = sum(v for k, v in breakdown.items() if k.split(" ")[0] == "photos")
        # What a re-tag reads: every tagged photo's embedding, in id order, in chunks.
        t0 = time.perf_counter()
        read = 0
        with conn, conn.cursor(name="retag_read") as cur:
            cur.itersize = 2000
            cur.execute("SELECT id, embedding FROM photos WHERE status = 'tagged' ORDER BY id")
            for _ in cur:
                read += 1
        read_s = time.perf_counter() - t0
        conn.close()
    result.update(
        {
            "rows_stored": total,
            "bytes_per_photo": round(size / total),
            "bytes_per_photo_marginal": round(marginal),
            "marginal_photos": len(more),
            "bytes_per_photo_marginal_by_relation": {
                k: round((grown[k] - breakdown.get(k, 0)) / len(more), 1)
                for k in grown
                if grown[k] != breakdown.get(k, 0)
            },
            "photos_table_bytes_per_photo": round(photos_size / total),
            "bytes_per_photo_by_relation": {k: round(v / total, 1) for k, v in breakdown.items()},
            "embedding_read_rows_per_s": round(read / read_s, 1),
            "embedding_dim": args.dim,
            "scene_classes": args.classes,
            "owner_ids": args.owner_ids,
            "database": "DATABASE_URL" if Settings.from_env().database_url else "embedded",
        }
    )
    if args.json:
        print(json.dumps(result))
    else:
        for stage in result.pop("stages", []):
            print(
                f"staged path, batch {stage['batch_size']:>4}: {stage['rows_per_s']:>9} rows/s; "
                + ", ".join(f"{k} {v}" for k, v in stage["us_per_row"].items())
                + " us/row"
            )
        paired = result.pop("paired", None)
        if paired:
            print(
                f"paired with {paired['against']}, batch {paired['batch_size']}: "
                + ", ".join(f"{k} {v} rows/s" for k, v in paired["rows_per_s"].items())
                + f"; head ratio {paired['head_ratio']} (rounds {paired['head_ratio_range']})"
            )
        for run in result.pop("runs"):
            print(
                f"{run['connections']:>3} connection(s)  {run['rows_per_s']:>9} rows/s  "
                f"{run['batch_ms_median']:>8} ms/batch (median)  "
                f"json {run['json_encode_ms_per_photo']} ms/photo"
            )
        for k, v in result.items():
            print(f"{k:30} {v}")
    return 0
