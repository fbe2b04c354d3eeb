"""`sightline bench publish`: tasks/s the handler's publisher sends to a broker.

The handler's own Celery app (JSON, publisher confirms where the broker offers them), one
connection, N tasks per call, to a private queue that no worker consumes and that is deleted
afterwards.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from sightline.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="handler publish rate to the broker, tasks/s")
    p.add_argument("--broker", default=None, help="broker URL (default: CELERY_BROKER_URL)")
    p.add_argument(
        "--tasks", type=positive_int, default=2000, help="tasks published in all (default 2000)"
    )
    p.add_argument(
        "--per-call", type=positive_int, default=100, help="tasks per handler invocation"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kombu.utils.url import maybe_sanitize_url

    from handlers.config import check_broker_url
    from handlers.contract import TAG_TASK
    from handlers.publish import CeleryPublisher
    from sightline.cli import CliError
    from workers.settings import Settings

    url = args.broker or Settings.from_env().broker_url
    if not url:
        raise CliError("no broker: pass --broker or set CELERY_BROKER_URL")
    try:  # a scheme kombu lacks was its KeyError, exit 1
        check_broker_url(url)
    except ValueError as exc:
        raise CliError(str(exc).replace("CELERY_BROKER_URL", "--broker", 1)) from None
    queue = f"sightline-bench-{uuid.uuid4().hex[:8]}"
    task = {"bucket": "bench", "version_id": None, "etag": None, "size": 1,
            "sequencer": None, "event_time": None, "owner": "bench"}  # fmt: skip
    app = CeleryPublisher(url).app

    def send(n: int, producer) -> None:
        for i in range(n):
            app.send_task(TAG_TASK, kwargs={**task, "key": f"{i}.jpg"}, queue=queue,
                          producer=producer, retry=False)  # fmt: skip

    try:
        with app.producer_or_acquire() as producer:
            send(1, producer)  # connect and declare before the clock starts
        sent, t0 = 0, time.perf_counter()
        while sent < args.tasks:
            n = min(args.per_call, args.tasks - sent)
            with app.producer_or_acquire() as producer:
                send(n, producer)
            sent += n
        seconds = time.perf_counter() - t0
        with app.connection_for_write() as conn:
            _, waiting, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
    finally:  # leave nothing behind: the messages, the queue, its exchange
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            channel.queue_purge(queue)
            channel.queue_delete(queue)
            channel.exchange_delete(queue)
    result = {
        "broker": maybe_sanitize_url(url),
        "tasks": sent,
        "tasks_per_s": round(sent / seconds, 1),
        "per_call": args.per_call,
        "queued": int(waiting),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k:12} {v}" for k, v in result.items()))
    return 0
