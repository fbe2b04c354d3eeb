"""`sightline backfill`: onboard a bucket's existing photos, re-run failed or stale ones."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from typing import Any

from sightline.cli import CliError

# The lowest --rate: one task in about 17 minutes (a rate of 1e-300 overflowed the sleep).
MIN_RATE = 0.001


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backfill",
        help="tag the photos already in a bucket; re-run failed or stale-model photos",
        description="Publish the tasks an upload would make for existing objects, as a job "
        "(see `sightline jobs`). Running the same command again resumes an unfinished job.",
    )
    p.add_argument("source", nargs="?", help="s3://BUCKET[/PREFIX] (with --inventory: a filter)")
    p.add_argument(
        "--inventory",
        metavar="MANIFEST",
        help="an S3 Inventory manifest.json (s3://... or a file), instead of listing",
    )
    pick = p.add_mutually_exclusive_group()
    pick.add_argument(
        "--missing",
        dest="selection",
        action="store_const",
        const="missing",
        help="objects with no photo row, or a changed ETag or version (default)",
    )
    pick.add_argument(
        "--all",
        dest="selection",
        action="store_const",
        const="all",
        help="every object, re-tagged even when unchanged",
    )
    pick.add_argument(
        "--stale-model",
        dest="selection",
        action="store_const",
        const="stale-model",
        help="photos tagged by another model version",
    )
    pick.add_argument(
        "--failed",
        dest="selection",
        action="store_const",
        const="failed",
        help="failed photos (see --failed-kind)",
    )
    p.add_argument(
        "--failed-kind",
        choices=("transient", "decode", "all"),
        default=None,
        help="with --failed: transient: parked after retries; decode: unreadable photos "
        "(default all)",
    )
    p.add_argument(
        "--model-version",
        help="the workers' model version for --stale-model "
        "(default: the one SIGHTLINE_WEIGHTS / SIGHTLINE_ARCH give)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=None,
        help="pause publishing while the tag queue holds more tasks than this "
        "(default: 32 batches of SIGHTLINE_BATCH_SIZE)",
    )
    p.add_argument("--rate", type=float, default=None, help="at most this many tasks/s")
    p.add_argument("--page-size", type=int, default=1000, help="objects per listing page")
    p.add_argument(
        "--resume",
        type=int,
        metavar="JOB",
        help="resume this job (default: an unfinished job with the same arguments, if any)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="after publishing, wait until the workers have finished the job",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar (default: when stderr is a terminal)",
    )
    p.add_argument("--json", action="store_true", help="print the job as JSON at the end")
    p.set_defaults(func=backfill, selection="missing")


def _params(args: argparse.Namespace, model_version: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"source": args.source, "selection": args.selection}
    if args.inventory:
        params["inventory"] = args.inventory
    if args.selection == "failed":
        params["failed_kind"] = args.failed_kind or "all"
    if args.selection == "stale-model":
        params["model_version"] = model_version
    return params


def current_model_version(settings: Any) -> str:
    """The model version the workers load with these settings (weights file or untrained)."""
    from models.checkpoint import load_checkpoint, untrained
    from models.scenes import load_categories
    from models.transforms import default_transform

    if settings.weights:
        _net, meta = load_checkpoint(settings.weights)
    elif settings.allow_untrained:
        arch = settings.arch
        _net, meta = untrained(
            arch=arch, categories=load_categories(), transform=default_transform(arch)
        )
    else:
        raise CliError(
            "--stale-model needs the workers' model: set SIGHTLINE_WEIGHTS (or "
            "SIGHTLINE_ALLOW_UNTRAINED=1), or pass --model-version"
        )
    return meta.model_version


def _resumable(cur: Any, params: dict[str, Any]) -> int | None:
    cur.execute(
        "SELECT id FROM jobs WHERE kind = 'backfill' AND state IN ('running', 'paused') "
        "AND params = %s::jsonb AND NOT coalesce(checkpoint @> '{\"complete\": true}', false) "
        "ORDER BY id DESC LIMIT 1",
        (json.dumps(params),),
    )
    row = cur.fetchone()
    return int(row[0]) if row else None


def backfill(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from handlers.config import HandlerConfig
    from handlers.contract import TAG_QUEUE
    from handlers.publish import CeleryPublisher
    from sightline.backfill import select, sources
    from sightline.backfill.run import Backfill, Pacing, PublishFailed
    from sightline.embedded import database_url
    from sightline.queues import queue_depths
    from workers import jobs
    from workers.db import connect
    from workers.fetch import s3_client
    from workers.settings import Settings

    if not args.source and not args.inventory:
        raise CliError("give a source s3://BUCKET[/PREFIX] or --inventory MANIFEST")
    if args.inventory and args.selection in ("stale-model", "failed"):
        raise CliError(
            f"--{args.selection} reads the photos table: give s3://BUCKET, not --inventory"
        )
    if args.page_size < 1 or (args.max_queue is not None and args.max_queue < 1):
        raise CliError("--page-size and --max-queue must be 1 or more")
    if args.failed_kind is not None and args.selection != "failed":
        raise CliError("--failed-kind goes with --failed")
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate >= MIN_RATE):
        raise CliError(f"--rate must be a number of tasks/s from {MIN_RATE}, not {args.rate}")
    bucket, prefix = sources.parse_source(args.source) if args.source else ("", "")
    if args.selection in ("stale-model", "failed") and not bucket:
        raise CliError(f"--{args.selection} needs s3://BUCKET[/PREFIX]")
    settings = Settings.from_env()
    try:
        config = HandlerConfig.from_env()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    s3 = s3_client(settings.s3_endpoint_url, settings.s3_timeout_s)
    try:  # the input before the broker: a missing manifest says so first
        manifest = sources.read_manifest(s3, args.inventory) if args.inventory else None
    except sources.SourceError as exc:
        raise CliError(str(exc)) from None
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot read {args.inventory}: {exc}") from None
    if not config.broker_url:
        raise CliError("CELERY_BROKER_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    model_version = None
    if args.selection == "stale-model":
        model_version = args.model_version or current_model_version(settings)
    params = _params(args, model_version)

    url, _server = database_url(settings)
    conn = connect(url, timeout_s=settings.db_timeout_s, register=False)

    @contextlib.contextmanager
    def cursor():
        with conn, conn.cursor() as cur:
            yield cur

    with cursor() as cur:
        job_id = args.resume or _resumable(cur, params)
        resumed = job_id is not None
        if resumed:
            job = jobs.get(cur, job_id)
            if job.kind != "backfill":
                raise CliError(f"job {job_id} is a {job.kind} job, not a backfill")
            if job.state not in ("running", "paused"):
                raise CliError(f"job {job_id} is {job.state}; only a live job resumes")
            if job.params != params:  # its source and selection are the job's, not others
                raise CliError(
                    f"job {job_id} backfills {json.dumps(job.params)}; resume it with the "
                    "same source and selection"
                )
            position = {
                k: v for k, v in (job.checkpoint or {}).items() if k not in ("complete", "sending")
            }
        else:
            job_id = jobs.create(cur, "backfill", params)
            position = {}
        # One publisher per job: a second backfill of the same job (same arguments, or
        # --resume) while the first still runs would publish every page again. A session
        # lock, taken before this transaction commits a new job, ends with the process,
        # so a killed backfill's job resumes.
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (jobs.PUBLISHER_LOCK, job_id))
        if not cur.fetchone()[0]:
            raise CliError(
                f"job {job_id} is being published by another backfill; let it finish, or "
                f"stop it with `sightline jobs pause|cancel {job_id}`"
            )
        if resumed:
            print(
                f"resuming job {job_id} from {json.dumps(position) or 'the start'}", file=sys.stderr
            )

    owners, exclude = config.owners, config.exclude
    if params["selection"] in ("stale-model", "failed"):
        pages = _db_pages(cursor, bucket, prefix, params, job_id, position, args.page_size, exclude)
    else:
        if manifest is not None:
            listing = sources.inventory_pages(s3, manifest, position, args.page_size)
            if prefix or bucket:
                listing = _filtered(listing, bucket, prefix)
        else:
            listing = sources.list_pages(s3, bucket, prefix, position, args.page_size)
        pages = select.listed_work(
            listing,
            cursor,
            selection=params["selection"],
            owners=owners,
            exclude=exclude,
            job_id=job_id,
        )

    options = config.broker_options
    max_queue = args.max_queue if args.max_queue is not None else 32 * settings.batch_size

    def depth() -> int | None:
        return queue_depths(config.broker_url, [TAG_QUEUE], options).depths.get(TAG_QUEUE)

    pacing = Pacing(max_queue=max_queue, rate=args.rate, depth=depth)
    publisher = CeleryPublisher(config.broker_url, options, bulk=True)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = _Bar(job_id) if show else None
    runner = Backfill(conn, job_id, publisher, pacing, on_page=bar.update if bar else None)
    try:
        runner.run(pages)
        if args.wait:
            _wait(cursor, job_id, bar)
        elif bar:  # the bar's last drawing: the job as publishing left it (done, when empty)
            with cursor() as cur:
                bar.update(jobs.get(cur, job_id))
    except (sources.SourceError, BotoCoreError, ClientError) as exc:
        # No credentials, no endpoint, no bucket: the job fails with the reason, so a later
        # backfill starts afresh rather than silently resuming it.
        where = args.inventory or args.source
        error = str(exc) if isinstance(exc, sources.SourceError) else f"cannot list {where}: {exc}"
        with contextlib.suppress(jobs.JobError), cursor() as cur:
            jobs.move(cur, job_id, "failed", error=error)
        raise CliError(f"{error} (job {job_id} failed)") from None
    except PublishFailed as exc:
        raise CliError(str(exc)) from None
    finally:
        if bar:
            bar.close()
        publisher.close()
    with cursor() as cur:
        job = jobs.get(cur, job_id)
    conn.close()
    if args.json:
        print(json.dumps(job.to_json()))
    else:
        print(
            f"job {job.id} ({job.state}): listed {job.listed:,}, published {job.published:,}, "
            f"done {job.done:,}, failed {job.failed:,}, skipped {job.skipped:,}"
        )
    return 0


# pg_try_advisory_lock(namespace, job id): the namespace keeps these apart from other locks.


def _filtered(pages: Any, bucket: str, prefix: str) -> Any:
    from sightline.backfill.sources import Page

    for page in pages:
        keep = [
            o
            for o in page.objects
            if (not bucket or o.bucket == bucket) and o.key.startswith(prefix)
        ]
        yield Page(keep, page.position)


def _db_pages(
    cursor: Any,
    bucket: str,
    prefix: str,
    params: dict[str, Any],
    job_id: int,
    position: dict[str, Any],
    page_size: int,
    exclude: Any,
) -> Any:
    from sightline.backfill.select import photo_pages

    # One transaction per page: a named cursor would hold a snapshot across the whole job.
    while True:
        with cursor() as cur:
            pages = photo_pages(
                cur,
                bucket=bucket,
                prefix=prefix,
                selection=params["selection"],
                job_id=job_id,
                model_version=params.get("model_version"),
                failed_kind=params.get("failed_kind", "all"),
                position=position,
                page_size=page_size,
                exclude=exclude,
            )
            work = next(pages, None)
        if work is None:
            return
        yield work
        position = work.position
        if work.listed < page_size:
            return


def _wait(cursor: Any, job_id: int, bar: Any) -> None:
    from workers import jobs

    poll_s = float(os.environ.get("SIGHTLINE_JOB_POLL_S") or 1.0)
    while True:
        with cursor() as cur:
            job = jobs.get(cur, job_id)
        if bar:
            bar.update(job)
        if job.state in jobs.FINAL:
            return
        time.sleep(poll_s)


class _Bar:
    """A tqdm bar over the job's outcomes, its total the tasks published so far."""

    def __init__(self, job_id: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, desc=f"job {job_id}", unit="photo", dynamic_ncols=True)

    def update(self, job: Any) -> None:
        self.bar.total = max(job.published, job.finished)
        self.bar.n = job.finished
        eta = job.eta_s()
        # As `jobs list`: "-" for a job that is not running (nothing left to wait for).
        shown = "-" if job.state != "running" else "?" if eta is None else f"{eta:.0f}s"
        # In this order (keyword arguments would be sorted by name).
        self.bar.set_postfix(
            {"listed": job.listed, "published": job.published, "failed": job.failed,
             "eta": shown},
            refresh=False,
        )  # fmt: skip
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
