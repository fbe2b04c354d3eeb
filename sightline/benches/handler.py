"""`sightline bench handler`: how fast the upload handler turns events into tasks.

records_per_s   SQS batches of S3 records, parsed, planned and published to Redis
                (the whole `handle` path), per process
publish_per_s   publishing prepared tasks alone, to Redis and to RabbitMQ (with confirms)
cold_import_ms  importing handlers.lambda_function in a fresh interpreter (median)

Tasks go to queues named for this run only and are deleted afterwards, so no worker sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

TARGET_RECORDS_PER_S = 5000
_HEAVY = ("torch", "torchvision", "PIL", "numpy", "boto3", "botocore", "celery", "kombu")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("handler", help="events parsed and published per second, cold import")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--records", type=int, default=20000, help="records per measurement")
    p.add_argument("--batch", type=int, default=100, help="SQS messages per invocation")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("SIGHTLINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis broker URL to publish to "
        "(default: SIGHTLINE_BENCH_REDIS_URL, else redis://127.0.0.1:6379/0)",
    )
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("SIGHTLINE_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        help="RabbitMQ URL for the AMQP publish rate, skipped if unreachable "
        "(default: SIGHTLINE_BENCH_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672//)",
    )
    p.add_argument("--imports", type=int, default=7, help="fresh interpreters for the import")
    p.set_defaults(func=run)


def sqs_batches(records: int, batch: int) -> list[dict[str, Any]]:
    """Lambda SQS events, each message one S3 ObjectCreated record (keys URL-encoded)."""
    from sightline.sqs_source import s3_record, sqs_event

    return [
        sqs_event(
            {
                str(uuid.UUID(int=i)): {
                    "Records": [
                        s3_record(
                            "photos",
                            f"users/u{i % 97}/Holiday {i // 1000}/photo +{i}.jpg",
                            size=1_000_000 + i,
                            etag=f"{i:032x}",
                            sequencer=f"0062E99A88DC{i:08X}",
                        )
                    ]
                }
                for i in range(lo, min(records, lo + batch))
            }
        )
        for lo in range(0, records, batch)
    ]


def _queues(run_id: str) -> dict[str, str]:
    from handlers.contract import FORGET_TASK, TAG_TASK

    return {
        TAG_TASK: f"sightline-bench-{run_id}-tag",
        FORGET_TASK: f"sightline-bench-{run_id}-forget",
    }


def _delete_queues(url: str, queues: dict[str, str]) -> None:
    """Delete this run's queues and what is left in them."""
    from kombu import Connection, Exchange, Queue

    with Connection(url, connect_timeout=5) as conn:
        for name in queues.values():
            # Declared first: kombu's Redis channel deletes only bindings it knows of.
            queue = Queue(name, Exchange(name), routing_key=name)(conn.default_channel)
            queue.declare()
            queue.delete()


def bench_handle(url: str, events: list[dict[str, Any]], records: int) -> dict[str, Any]:
    """The full path per invocation: envelope parsing, planning, one publish per batch."""
    from handlers.core import handle
    from handlers.publish import CeleryPublisher
    from handlers.rules import OwnerRule

    queues = _queues(uuid.uuid4().hex[:8])
    publisher = CeleryPublisher(url, queues=queues)
    owners = OwnerRule()
    try:
        handle(events[0], owners, publisher)  # connect and declare outside the clock
        t0, c0 = time.perf_counter(), time.process_time()
        failed = sum(len(handle(e, owners, publisher).failed_message_ids) for e in events)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        publisher.close()
        _delete_queues(url, queues)
    return {
        "records_per_s": round(records / elapsed),
        "records_per_cpu_s": round(records / cpu),
        "failed_messages": failed,
    }


def bench_plan(events: list[dict[str, Any]], records: int) -> float:
    from handlers.core import plan
    from handlers.rules import OwnerRule

    owners = OwnerRule()
    t0 = time.perf_counter()
    for e in events:
        plan(e, owners)
    return round(records / (time.perf_counter() - t0))


def bench_publish(url: str, records: int, batch: int) -> dict[str, Any]:
    """Prepared tasks only, in batches of ``batch``: the broker's share of the cost."""
    from handlers.contract import TAG_TASK, ObjectTask
    from handlers.publish import CeleryPublisher

    queues = _queues(uuid.uuid4().hex[:8])
    tasks = [
        (
            TAG_TASK,
            ObjectTask(
                bucket="photos",
                key=f"users/u{i % 97}/photo {i}.jpg",
                version_id=None,
                etag=f"{i:032x}",
                size=1_000_000 + i,
                sequencer=f"0062E99A88DC{i:08X}".ljust(64, "0"),
                event_time="2024-06-01T12:00:00.000Z",
                owner=f"u{i % 97}",
            ),
        )
        for i in range(records)
    ]
    publisher = CeleryPublisher(url, queues=queues)
    try:
        errors = publisher.publish(tasks[:batch])  # connect and declare outside the clock
        if any(errors):
            return {"per_s": None, "error": str(next(e for e in errors if e))}
        t0 = time.perf_counter()
        failed = 0
        for i in range(0, records, batch):
            failed += sum(e is not None for e in publisher.publish(tasks[i : i + batch]))
        elapsed = time.perf_counter() - t0
    finally:
        publisher.close()
        _delete_queues(url, queues)
    return {"per_s": round(records / elapsed), "failed": failed}


def bench_cold_import(runs: int) -> dict[str, Any]:
    """Import time of the Lambda module in fresh interpreters (interpreter start excluded)."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import time, sys, json; t = time.perf_counter(); import handlers.lambda_function;"
        "ms = (time.perf_counter() - t) * 1000;"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({list(_HEAVY)!r}));"
        "print(json.dumps([ms, heavy]))"
    )
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    times, heavy = [], set()
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        ms, loaded = json.loads(out.stdout)
        times.append(round(ms, 1))
        heavy.update(loaded)
    return {
        "median_ms": round(statistics.median(times), 1),
        "runs_ms": times,
        "heavy": sorted(heavy),
    }


def run(args: argparse.Namespace) -> int:
    from sightline.cli import CliError

    if args.records < 1 or args.batch < 1 or args.imports < 1:
        raise CliError("--records, --batch and --imports must be positive")
    import logging

    from kombu import Connection

    try:
        with Connection(args.redis_url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        raise CliError(f"Redis at {args.redis_url} is not usable: {exc}") from None
    logging.getLogger("sightline.handler").setLevel(logging.ERROR)  # no per-record lines
    events = sqs_batches(args.records, args.batch)
    full = bench_handle(args.redis_url, events, args.records)
    redis_pub = bench_publish(args.redis_url, args.records, args.batch)
    try:
        amqp_pub = bench_publish(args.amqp_url, min(args.records, 5000), args.batch)
    except Exception as exc:  # RabbitMQ is optional for this bench: say so, keep the rest
        amqp_pub = {"per_s": None, "error": f"{type(exc).__name__}: {exc}"}
    imports = bench_cold_import(args.imports)
    result = {
        "records_per_s": full["records_per_s"],
        "target_records_per_s": TARGET_RECORDS_PER_S,
        "meets_target": full["records_per_s"] >= TARGET_RECORDS_PER_S,
        # Wall time on a shared machine includes other processes' turns; CPU time is ours.
        "records_per_cpu_s": full["records_per_cpu_s"],
        "plan_only_records_per_s": bench_plan(events, args.records),
        "publish_per_s": {"redis": redis_pub["per_s"], "rabbitmq": amqp_pub["per_s"]},
        "cold_import_ms": imports["median_ms"],
        "cold_import_runs_ms": imports["runs_ms"],
        "heavy_modules_at_import": imports["heavy"],
        "records": args.records,
        "batch": args.batch,
        "failed_messages": full["failed_messages"],
        "errors": {k: v["error"] for k, v in (("rabbitmq", amqp_pub),) if v.get("error")},
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"handle (parse+plan+publish to Redis): {result['records_per_s']} records/s "
            f"(target {TARGET_RECORDS_PER_S}, batch {args.batch}); "
            f"{result['records_per_cpu_s']} per CPU second\n"
            f"plan only: {result['plan_only_records_per_s']} records/s\n"
            f"publish only: Redis {redis_pub['per_s']}/s, RabbitMQ {amqp_pub['per_s']}/s\n"
            f"cold import of handlers.lambda_function: {imports['median_ms']} ms "
            f"(runs {imports['runs_ms']}), heavy modules: {imports['heavy'] or 'none'}"
        )
    return 0
