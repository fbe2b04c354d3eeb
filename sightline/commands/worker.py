"""`sightline worker`: a Celery worker with the model loaded once for the process."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from typing import Any

from handlers.contract import QUEUES, TAG_QUEUE
from sightline.argtypes import millis, positive_int
from sightline.cli import CliError

log = logging.getLogger("sightline.worker")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="start a tagging worker")
    p.add_argument("-Q", "--queues", default=",".join(QUEUES), help="comma-separated queues")
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=2,
        help="batches in flight: while one runs the network, the next is fetched and decoded",
    )
    p.add_argument(
        "--pool",
        default="threads",
        choices=("threads", "solo"),
        help="threads (one process owns the model; default) or solo. Not prefork: its forked "
        "children inherit a loaded network and the batcher's threads, and hang",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help="photos per forward pass")
    p.add_argument("--batch-wait-ms", type=millis, default=None, help="flush a partial batch")
    p.add_argument(
        "--loglevel",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="DEBUG, INFO, WARNING or ERROR (default: INFO)",
    )
    p.add_argument(
        "--hostname",
        default=None,
        help="Celery node name (default: sightline@HOST:PID); events name the worker by it",
    )
    p.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    from sightline.embedded import database_url
    from workers.app import configure
    from workers.checks import StartupError, check_all
    from workers.db import connect
    from workers.heartbeat import Heartbeat
    from workers.logs import configure_json_logging
    from workers.metrics import WorkerMetrics
    from workers.runtime import WorkerRuntime
    from workers.settings import Settings

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues:  # "," served a queue named ""
        raise CliError(f"--queues names no queue ({' and/or '.join(QUEUES)}); got {args.queues!r}")
    settings = Settings.from_env()
    if not settings.broker_url:
        raise CliError("CELERY_BROKER_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    if settings.log_format == "json":
        configure_json_logging(args.loglevel)
    for q in queues:
        if q not in QUEUES:  # it may be routed to on purpose; said, not refused
            log.warning("queue %r gets no task sightline publishes (they go to %s)", q,
                        " and ".join(QUEUES))  # fmt: skip
    url, _server = database_url(settings)
    tagging = TAG_QUEUE in queues  # only the tag queue reads photos and needs the network
    try:
        check_all(settings, url, settings.broker_url, object_store=tagging)
    except StartupError as exc:
        raise CliError(str(exc)) from None
    log.info("startup checks passed: broker, database%s", ", object store" if tagging else "")
    metrics = WorkerMetrics()
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port)
        except OSError as exc:
            raise CliError(f"cannot serve metrics on port {settings.metrics_port}: {exc}") from exc
    runtime = WorkerRuntime(settings, url, metrics=metrics)
    if tagging:
        runtime.model.load()  # refuse to start without weights, before taking any task
        # before any task: which heads are real, and the CPU bf16 choice
        log.info("%s", runtime.model.describe())
        conn = connect(url, timeout_s=settings.db_timeout_s)
        try:
            source = f"worker {args.hostname or socket.gethostname()}"
            version = runtime.install_scene_map(conn, source)
        finally:
            conn.close()
        log.info("filing photos by scene map %d", version)
    # else: maintenance only (deletes, re-tag chunks) needs no network: CPU workers suffice
    wait_ms = settings.batch_wait_ms if args.batch_wait_ms is None else args.batch_wait_ms
    options = settings.transport_options(wait_ms)
    if "visibility_timeout" in options:
        log.info("broker visibility timeout %s s", options["visibility_timeout"])
    app = configure(
        runtime,
        settings.broker_url,
        options,
        batch_size=settings.batch_size if args.batch_size is None else args.batch_size,
        batch_wait_s=wait_ms / 1000.0,
        max_retries=settings.max_retries,
        retry_base_s=settings.retry_base_s,
        batch_time_limit_s=settings.batch_time_limit_s,
    )
    if not tagging:
        # A re-tag chunk takes seconds: reserve one at a time, so idle workers get the rest.
        app.conf.worker_prefetch_multiplier = 1
    # JSON mode: no banner, so that every line the process writes is a JSON log line.
    argv = ["--quiet"] if settings.log_format == "json" else []
    argv += [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency}",
        f"--pool={args.pool}",
        f"--loglevel={args.loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    heartbeat = Heartbeat(
        url,
        args.hostname or f"sightline@{socket.gethostname()}:{os.getpid()}",
        queues,
        lambda: {
            "model_version": runtime.model.meta.model_version if runtime.model.meta else None,
            # A maintenance-only worker loads no model, so it files no photo by any map.
            "scene_map_version": runtime.scene_maps.version if tagging else None,
            "releases": [r.version for r in runtime.releases.current()],
        },
    )
    heartbeat.start()
    try:
        return _run_celery(app, argv)
    finally:
        heartbeat.stop()


def _run_celery(app: Any, argv: list[str]) -> int:
    """Run the Celery worker; its exit status: 1 after an "Unrecoverable error" (a broker
    refusing a queue, a crash in a bootstep). Celery records it on the worker object and
    ``worker_main``/``app.start`` drop it, so the process would exit 0."""
    from celery.signals import worker_init

    workers: list[Any] = []

    def keep(sender: Any, **_: Any) -> None:
        workers.append(sender)

    worker_init.connect(keep, weak=False)
    try:
        app.start(argv)
    finally:
        worker_init.disconnect(keep)
    return int(workers[-1].exitcode or 0) if workers else 1
