"""`sightline worker`: a Celery worker with the model loaded once for the process."""

from __future__ import annotations

import argparse
import json
import os

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="start a tagging worker")
    p.add_argument("-Q", "--queues", default="tag,maintenance", help="comma-separated queues")
    p.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="batches in flight: while one runs the network, the next is fetched and decoded",
    )
    p.add_argument("--pool", default="threads", help="threads (one process owns the model)")
    p.add_argument("--batch-size", type=int, default=None, help="photos per forward pass")
    p.add_argument("--batch-wait-ms", type=float, default=None, help="flush a partial batch")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--no-retries", action="store_true", help="fail at once (tests)")
    p.add_argument("--hostname", default=None)
    p.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    from sightline.embedded import database_url
    from sightline.settings import Settings
    from workers.app import configure
    from workers.logs import configure_json_logging
    from workers.metrics import WorkerMetrics
    from workers.runtime import WorkerRuntime

    settings = Settings.from_env()
    if not settings.broker_url:
        raise CliError("CELERY_BROKER_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    if settings.log_format == "json":
        configure_json_logging(args.loglevel)
    url, _server = database_url(settings)
    metrics = WorkerMetrics()
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port)
        except OSError as exc:
            raise CliError(f"cannot serve metrics on port {settings.metrics_port}: {exc}") from exc
    runtime = WorkerRuntime(settings, url, metrics=metrics)
    from sightline.contract import TAG_QUEUE

    if TAG_QUEUE in args.queues.split(","):
        runtime.model.load()  # refuse to start without weights, before taking any task
    # else: maintenance only (deletes, re-tag chunks) needs no network: CPU workers suffice
    options = json.loads(os.environ.get("SIGHTLINE_BROKER_OPTIONS") or "{}")
    app = configure(
        runtime,
        settings.broker_url,
        options,
        batch_size=args.batch_size or settings.batch_size,
        batch_wait_s=(args.batch_wait_ms or settings.batch_wait_ms) / 1000.0,
        max_retries=0 if args.no_retries else settings.max_retries,
        retry_base_s=settings.retry_base_s,
    )
    if TAG_QUEUE not in args.queues.split(","):
        # A re-tag chunk takes seconds: reserve one at a time, so idle workers get the rest.
        app.conf.worker_prefetch_multiplier = 1
    argv = [
        "worker",
        f"--queues={args.queues}",
        f"--concurrency={args.concurrency}",
        f"--pool={args.pool}",
        f"--loglevel={args.loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0
