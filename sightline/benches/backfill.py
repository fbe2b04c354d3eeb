"""`sightline bench backfill`: how fast a backfill turns a source into tasks, how cheap a
no-op is, and photos tagged per second end to end.

- ``inventory_rows_to_tasks_per_s``: an S3 Inventory report (one CSV.gz data file of
  ``--inventory-rows`` rows, on a local S3 endpoint) read, selected against an empty photos
  table, published to the broker and checkpointed page by page, as ``sightline backfill
  --inventory`` does.
- ``list_to_tasks_per_s``: the same from a ListObjectsV2 listing of ``--list-keys`` objects.
- ``noop_per_s``: job tasks for photos already tagged, unchanged and on the current model,
  through one worker runtime's batches (no fetch, no model), ``--batch-size`` per batch.
- ``tagged_per_s``: ``--tagged-photos`` photos in a bucket, a backfill and one ``sightline
  worker`` process, from the first publish until the job is done.

Tasks of the first two go to a private queue that a thread empties (on Redis) so a million
tasks never sit in the broker; nothing consumes them. The local S3 endpoint is a moto server
process of its own (``--s3-endpoint`` for another); the database is a scratch database.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PARTS = ("inventory", "list", "noop", "tagged")
# Not run by default: the inventory part again with every task through send_task (the road
# before the bulk one), for a before/after in one run.
EXTRA_PARTS = ("inventory-send-task",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="backfill source->tasks rates, no-op and tagged rates")
    p.add_argument(
        "--inventory-rows",
        type=int,
        default=1_000_000,
        help="rows in the inventory report, objects (default 1000000)",
    )
    p.add_argument(
        "--list-keys", type=int, default=20_000, help="objects in the listed bucket (default 20000)"
    )
    p.add_argument(
        "--noop-photos",
        type=int,
        default=4000,
        help="already-tagged photos sent through the no-op path (default 4000)",
    )
    p.add_argument(
        "--tagged-photos",
        type=int,
        default=200,
        help="photos tagged end to end by one worker (default 200)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="worker batch (default: setting)")
    p.add_argument(
        "--page-size",
        type=int,
        default=1000,
        help="objects per listing or inventory page, each checkpointed (default 1000)",
    )
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated: " + ", ".join(PARTS + EXTRA_PARTS),
    )
    p.add_argument("--broker", default=None, help="broker URL (default: CELERY_BROKER_URL)")
    p.add_argument("--s3-endpoint", default=None, help="an S3 endpoint (default: moto server)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


@contextmanager
def _moto(endpoint: str | None):
    """A moto S3 server in a process of its own, so it does not share this one's GIL."""
    if endpoint:
        yield endpoint
        return
    from sightline.embedded import free_port

    # moto takes any credentials; the clients here and the worker process need some.
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def _drained(broker_url: str, queue: str):
    """Empty ``queue`` every 0.2 s while the block runs (Redis only), delete it after."""
    stop = threading.Event()
    client = None
    if broker_url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(broker_url)

        def drain() -> None:
            while not stop.wait(0.2):
                client.delete(queue)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if client is not None:
            client.delete(queue)


def _publish_job(
    conn: Any, pages: Any, broker_url: str, queue: str, job_id: int, bulk: bool = True
) -> Any:
    from handlers.contract import TAG_TASK
    from handlers.publish import CeleryPublisher
    from sightline.backfill.run import Backfill, Pacing

    publisher = CeleryPublisher(broker_url, queues={TAG_TASK: queue}, bulk=bulk)
    try:
        return Backfill(conn, job_id, publisher, Pacing(max_queue=None)).run(pages)
    finally:
        publisher.close()


def _source_rate(
    url: str,
    s3: Any,
    broker_url: str,
    kind: str,
    args: argparse.Namespace,
    bucket: str,
    manifest_uri: str | None,
    bulk: bool = True,
) -> dict[str, Any]:
    """Tasks/s from an inventory or a listing through selection, publish and checkpoints;
    ``bulk``: the backfill's bulk publishing road, else ``send_task`` per task."""
    import contextlib

    from handlers.rules import Exclusions, OwnerRule
    from sightline.backfill import select, sources
    from workers import jobs
    from workers.db import connect

    conn = connect(url, register=False)

    @contextlib.contextmanager
    def cursor():
        with conn, conn.cursor() as cur:
            yield cur

    with cursor() as cur:
        job_id = jobs.create(cur, "backfill", {"bench": kind})
    queue = f"sightline-bench-{uuid.uuid4().hex[:8]}"
    t0, cpu0 = time.perf_counter(), time.process_time()
    if kind == "inventory":
        assert manifest_uri is not None
        manifest = sources.read_manifest(s3, manifest_uri)
        listing = sources.inventory_pages(s3, manifest, None, args.page_size)
    else:
        listing = sources.list_pages(s3, bucket, "", None, args.page_size)
    pages = select.listed_work(
        listing,
        cursor,
        selection="missing",
        owners=OwnerRule(),
        exclude=Exclusions(),
        job_id=job_id,
    )
    with _drained(broker_url, queue):
        out = _publish_job(conn, pages, broker_url, queue, job_id, bulk)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    conn.close()
    return {
        "tasks": out.published,
        "listed": out.listed,
        "seconds": round(seconds, 2),
        # this process's CPU (reading, selecting, building and publishing the tasks): on a
        # busy machine tasks per CPU second says more than tasks per wall second
        "cpu_seconds": round(cpu, 2),
        "tasks_per_cpu_s": round(out.published / cpu, 1) if cpu else None,
        "pages": out.pages,
    }


def _inventory(s3: Any, rows: int) -> str:
    """One CSV.gz data file and its manifest in a fresh bucket; the manifest's URI."""
    bucket = f"bench-inv-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    text = io.StringIO()
    w = csv.writer(text)
    for i in range(rows):
        w.writerow(
            [
                "photos",
                f"users/u{i % 1000}/{i:09d}.jpg",
                "",
                "true",
                "false",
                "3500000",
                "2024-05-01T10:00:00.000Z",
                f"{i:032x}",
            ]
        )
    data = gzip.compress(text.getvalue().encode(), compresslevel=6)
    s3.put_object(Bucket=bucket, Key="inv/data/0.csv.gz", Body=data)
    manifest = {
        "sourceBucket": "photos",
        "destinationBucket": f"arn:aws:s3:::{bucket}",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, "
        "LastModifiedDate, ETag",
        "files": [{"key": "inv/data/0.csv.gz", "size": len(data), "MD5checksum": ""}],
    }
    s3.put_object(Bucket=bucket, Key="inv/manifest.json", Body=json.dumps(manifest).encode())
    return f"s3://{bucket}/inv/manifest.json"


def _bucket_of(s3: Any, keys: int, body: bytes | None = None, photos: bool = False) -> str:
    bucket = f"bench-list-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)

    def put(i: int) -> None:
        if photos:
            from sightline.samples import synthetic_jpeg

            data = synthetic_jpeg(seed=i, width=320, height=240)
        else:
            data = body or b"x"
        s3.put_object(Bucket=bucket, Key=f"users/u{i % 100}/{i:08d}.jpg", Body=data)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(keys)))
    return bucket


def _as_url(dsn: str) -> str:
    """A libpq URL for a key=value DSN (scratch_database gives one; a worker's DATABASE_URL
    must be a URL), every parameter but the database name in the query string."""
    if "://" in dsn:
        return dsn
    from urllib.parse import quote, urlencode

    from psycopg2.extensions import parse_dsn

    params = parse_dsn(dsn)
    name = params.pop("dbname", "")
    return f"postgresql:///{quote(name)}" + (f"?{urlencode(params)}" if params else "")


def _noop_rate(url: str, endpoint: str, batch: int, photos: int) -> dict[str, Any]:
    """Job tasks for tagged, unchanged, current photos through one runtime's batches."""
    from dataclasses import replace

    from workers import jobs
    from workers.db import connect
    from workers.runtime import WorkerRuntime
    from workers.settings import Settings

    settings = Settings.from_env()
    if not settings.weights:
        settings = replace(settings, allow_untrained=True)
    rt = WorkerRuntime(replace(settings, s3_endpoint_url=endpoint), url)
    rt.model.load()
    assert rt.model.meta is not None
    version = rt.model.meta.model_version
    conn = connect(url, register=False)
    with conn, conn.cursor() as cur:
        # tagged by this model and its heads (per-head provenance, as a worker writes it)
        cur.execute(
            "INSERT INTO photos (owner, bucket, key, etag, status, model_version, "
            "model_trained, scene_trained, embedding_trained, event_time) "
            "SELECT 'u' || (i %% 100), 'noop', 'users/u' || (i %% 100) || '/' || i || '.jpg', "
            "md5(i::text), 'tagged', %s, %s, %s, %s, now() FROM generate_series(1, %s) AS i",
            (
                version,
                rt.model.meta.trained,
                rt.model.meta.scene_head.trained,
                rt.model.meta.embedding_head.trained,
                photos,
            ),
        )
        job_id = jobs.create(cur, "backfill", {"bench": "noop"})
        cur.execute("SELECT owner, key, etag FROM photos WHERE bucket = 'noop' ORDER BY id")
        tasks = [
            {
                "bucket": "noop",
                "key": k,
                "version_id": None,
                "etag": e,
                "size": None,
                "sequencer": None,
                "event_time": None,
                "owner": o,
                "job_id": job_id,
            }
            for o, k, e in cur.fetchall()
        ]
    conn.close()
    rt.tag_batch(tasks[:batch])  # connect and plan before the clock starts
    skipped = 0
    t0 = time.perf_counter()
    for i in range(batch, len(tasks), batch):
        skipped += rt.tag_batch(tasks[i : i + batch]).count("skipped")
    seconds = time.perf_counter() - t0
    timed = len(tasks) - batch
    if skipped != timed:
        raise RuntimeError(f"only {skipped} of {timed} no-op tasks were skipped")
    return {
        "tasks": timed,
        "seconds": round(seconds, 3),
        "batch_size": batch,
        "model_version": version,
    }


def _tagged_rate(
    url: str, endpoint: str, broker_url: str, args: argparse.Namespace, s3: Any, batch: int
) -> dict[str, Any]:
    """A bucket of photos, a backfill and one worker process until the job is done."""
    import contextlib

    from handlers.contract import TAG_QUEUE
    from handlers.rules import Exclusions, OwnerRule
    from sightline.backfill import select, sources
    from sightline.stack import worker_process
    from workers import jobs
    from workers.db import connect

    bucket = _bucket_of(s3, args.tagged_photos, photos=True)
    env = dict(
        os.environ,
        DATABASE_URL=_as_url(url),
        CELERY_BROKER_URL=broker_url,
        SIGHTLINE_S3_ENDPOINT_URL=endpoint,
    )
    env.setdefault("SIGHTLINE_ALLOW_UNTRAINED", "1")
    # The log outlives a failed run (the error names it); a run that succeeds removes it.
    log = Path(tempfile.mkdtemp(prefix="sightline-bench-")) / "worker.log"
    worker = worker_process(
        env, log, "--queues", TAG_QUEUE, "--batch-size", str(batch), "--loglevel", "INFO"
    )
    conn = connect(url, register=False)

    @contextlib.contextmanager
    def cursor():
        with conn, conn.cursor() as cur:
            yield cur

    try:
        # The clock starts once the worker has loaded its model and said "ready".
        deadline = time.monotonic() + 300
        while " ready." not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start: see {log}")
            time.sleep(0.2)
        with cursor() as cur:
            job_id = jobs.create(cur, "backfill", {"bench": "tagged"})
        t0 = time.perf_counter()
        listing = sources.list_pages(s3, bucket, "", None, args.page_size)
        pages = select.listed_work(
            listing,
            cursor,
            selection="missing",
            owners=OwnerRule(),
            exclude=Exclusions(),
            job_id=job_id,
        )
        _publish_job(conn, pages, broker_url, TAG_QUEUE, job_id)
        deadline = time.monotonic() + 3600
        while True:
            with cursor() as cur:
                job = jobs.get(cur, job_id)
            if job.state in jobs.FINAL or worker.poll() is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the tagged part did not finish within an hour")
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
    finally:
        worker.terminate()
        worker.wait(30)
        conn.close()
    if job.done != args.tagged_photos:
        raise RuntimeError(
            f"the worker tagged {job.done} of {args.tagged_photos} photos: see {log}"
        )
    shutil.rmtree(log.parent, ignore_errors=True)
    return {
        "photos": job.done,
        "seconds": round(seconds, 2),
        "batch_size": batch,
        "arch": env.get("SIGHTLINE_ARCH") or "wide_resnet50_2",
    }


def run(args: argparse.Namespace) -> int:
    import boto3
    from botocore.config import Config

    from sightline.cli import CliError
    from sightline.stack import scratch_database
    from workers.settings import Settings

    settings = Settings.from_env()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - set(PARTS + EXTRA_PARTS):
        raise CliError(f"--parts takes some of {', '.join(PARTS + EXTRA_PARTS)}")
    sizes = (args.inventory_rows, args.list_keys, args.noop_photos, args.tagged_photos)
    if min(sizes) < 1 or args.page_size < 1 or (args.batch_size or 1) < 1:
        raise CliError("sizes, --page-size and --batch-size must be positive")
    broker_url = args.broker or settings.broker_url
    if not broker_url and set(parts) & {"inventory", "inventory-send-task", "list", "tagged"}:
        raise CliError("no broker: pass --broker or set CELERY_BROKER_URL")
    batch = args.batch_size or settings.batch_size
    result: dict[str, Any] = {
        "broker": broker_url.split("://", 1)[0] if broker_url else None,
        "page_size": args.page_size,
    }
    with _moto(args.s3_endpoint) as endpoint, scratch_database() as url:
        s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=16))
        result["s3"] = "moto server" if not args.s3_endpoint else endpoint
        if {"inventory", "inventory-send-task"} & set(parts):
            manifest = _inventory(s3, args.inventory_rows)
        for part in ("inventory", "inventory-send-task"):
            if part not in parts:
                continue
            # nothing consumes these tasks: the photos table stays empty for the next part
            bulk = part == "inventory"
            r = _source_rate(url, s3, broker_url, "inventory", args, "", manifest, bulk)
            name = "inventory" if part == "inventory" else "inventory_send_task"
            result[name] = r
            result[f"{name}_rows_to_tasks_per_s"] = round(r["tasks"] / r["seconds"], 1)
        if "list" in parts:
            bucket = _bucket_of(s3, args.list_keys)
            r = _source_rate(url, s3, broker_url, "list", args, bucket, None)
            result["list"] = r
            result["list_to_tasks_per_s"] = round(r["tasks"] / r["seconds"], 1)
        if "noop" in parts:
            r = _noop_rate(url, endpoint, batch, args.noop_photos)
            result["noop"] = r
            result["noop_per_s"] = round(r["tasks"] / r["seconds"], 1)
        if "tagged" in parts:
            r = _tagged_rate(url, endpoint, broker_url, args, s3, batch)
            result["tagged"] = r
            result["tagged_per_s"] = round(r["photos"] / r["seconds"], 2)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32} {v}")
    return 0
