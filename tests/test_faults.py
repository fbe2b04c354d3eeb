"""Faults with real processes: the broker restarted mid-run, Postgres restarted mid-run (and
down while retries run out), and events for one key out of order through the broker.
Each ends with every photo in its final state, one row each, without anyone stepping in."""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
import redis

from handlers.core import handle
from handlers.publish import CeleryPublisher
from handlers.rules import OwnerRule
from sightline.embedded import embedded_postgres, free_port
from sightline.samples import synthetic_jpeg
from sightline.sqs_source import deliver_until_published, s3_record
from tests.support import start_worker, stop_worker, wait_for, worker_env
from workers import migrate

pytestmark = pytest.mark.slow
OWNERS = OwnerRule()


# ------------------------------------------------------------------ events as S3 sends them


def record(bucket: str, key: str, *, seq: str | None, created: bool = True, etag: str = "e",
           at: str = "2024-06-01T12:00:00.000Z") -> dict[str, Any]:  # fmt: skip
    """One S3 notification record (key URL-encoded, as S3 sends it)."""
    return s3_record(bucket, key, created=created, sequencer=seq, etag=etag, event_time=at)


def deliver(publisher: CeleryPublisher, records: list[dict], timeout: float = 120.0) -> int:
    """All records in one SQS invocation through the handler; failed messages are retried,
    as Lambda's SQS source retries them, until every one is published. Returns the rounds."""
    rounds, _ = deliver_until_published(
        records,
        lambda event: handle(event, OWNERS, publisher).failed_message_ids,
        batch=max(1, len(records)),
        timeout_s=timeout,
    )
    return rounds


def _rows(conn) -> list[tuple]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT key, status, etag, attempts FROM photos ORDER BY key")
        return cur.fetchall()


def _count(url: str, status: str = "tagged") -> int:
    try:
        conn = psycopg2.connect(url, connect_timeout=2)
    except psycopg2.OperationalError:
        return -1
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM photos WHERE status = %s", (status,))
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def photos(moto_endpoint: str) -> tuple[str, list[str]]:
    """A bucket with 24 small photos in it."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"f-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"users/f/{i:02d}.jpg" for i in range(24)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=i, width=160, height=120))
    return bucket, keys


# ------------------------------------------------------------------ the broker restarted


class OwnRedis:
    """A redis-server of this test's own on a free port, durable (AOF, fsync always) as a
    broker should be, so it can be killed and restarted without touching the shared one."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), timeout=20, what="our redis-server")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # a crash, not a polite shutdown
        self.proc.wait(10)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.proc.terminate()
        server.proc.wait(10)


def test_broker_restart_mid_run_loses_no_photo(db, db_url, moto_endpoint, photos, own_redis,
                                               tmp_path) -> None:  # fmt: skip
    """Redis is killed while the worker is tagging and the handler is publishing; it comes
    back 3 s later. The handler's failed messages are retried by their source, the worker
    reconnects by itself, and every photo ends tagged: one row each."""
    bucket, keys = photos
    log = tmp_path / "worker.log"
    env = worker_env(
        db_url, own_redis.url, moto_endpoint,
        SIGHTLINE_BROKER_OPTIONS=json.dumps({"visibility_timeout": 10}),
    )  # fmt: skip
    worker = start_worker(env, "--batch-size", "4", "--batch-wait-ms", "200", log=log)
    publisher = CeleryPublisher(own_redis.url, timeout_s=2)
    try:
        first, second = keys[:12], keys[12:]
        deliver(publisher, [record(bucket, k, seq=None) for k in first])
        wait_for(lambda: _count(db_url) >= 4, timeout=120, what=f"first photos ({log})")
        own_redis.kill()
        rounds: list[int] = []
        sender = threading.Thread(
            target=lambda: rounds.append(
                deliver(publisher, [record(bucket, k, seq=None) for k in second])
            )
        )
        sender.start()  # publishes into the outage: its messages fail until Redis is back
        time.sleep(3)
        own_redis.start()
        sender.join(120)
        assert rounds and rounds[0] > 1  # the outage was felt by the handler
        wait_for(
            lambda: _count(db_url) == len(keys), timeout=180, what=f"every photo tagged ({log})"
        )
        assert worker.poll() is None  # the same worker recovered by itself
    finally:
        publisher.close()
        stop_worker(worker)
    rows = _rows(db)
    assert [(k, s) for k, s, _, _ in rows] == [(k, "tagged") for k in keys]


# ------------------------------------------------------------------ Postgres restarted


class OwnPostgres:
    """An embedded Postgres of this test's own, in a temp folder, that can be stopped hard and
    started again (the session's server stays untouched)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sightline-pgfault-"))
        self.folder.chmod(0o755)
        self.server = embedded_postgres(self.folder / "data")
        self.url = self.server.get_uri()

    def _ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", *args], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")  # like a crash: no checkpoint, recovery on start

    def start(self) -> None:
        # restart on a stopped server starts it with the options it last ran with
        self._ctl("-l", str(self.server.log), "restart")


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    import shutil

    pg = OwnPostgres()
    migrate.upgrade(pg.url)
    yield pg
    pg.server.cleanup()
    shutil.rmtree(pg.folder, ignore_errors=True)


def _send(sender: Any, name: str, queue: str, bucket: str, keys: list[str], seq: str) -> None:
    for key in keys:
        sender.send_task(
            name,
            queue=queue,
            kwargs={"bucket": bucket, "key": key, "version_id": None, "etag": None,
                    "size": None, "sequencer": seq, "event_time": None, "owner": "f"},
        )  # fmt: skip


def test_postgres_restart_mid_run_loses_no_photo(own_pg, redis_url, moto_endpoint, photos,
                                                 tmp_path) -> None:  # fmt: skip
    """Postgres goes down hard while the worker writes, and comes back 4 s later: batches
    that failed are retried with backoff and every photo ends tagged, one row each."""
    from celery import Celery

    bucket, keys = photos
    log = tmp_path / "worker.log"
    env = worker_env(own_pg.url, redis_url, moto_endpoint, SIGHTLINE_DB_TIMEOUT_S="3",
                     SIGHTLINE_RETRY_BASE_S="0.5")  # fmt: skip
    worker = start_worker(env, "--batch-size", "4", "--batch-wait-ms", "200", log=log)
    sender = Celery(broker=redis_url, set_as_current=False)
    try:
        _send(sender, "sightline.tag", "tag", bucket, keys[:12], "10")
        wait_for(lambda: _count(own_pg.url) >= 4, timeout=120, what=f"first photos ({log})")
        own_pg.stop()
        _send(sender, "sightline.tag", "tag", bucket, keys[12:], "10")
        time.sleep(4)
        own_pg.start()
        wait_for(lambda: _count(own_pg.url) == len(keys), timeout=180, what=f"all ({log})")
        assert worker.poll() is None
    finally:
        stop_worker(worker)
    conn = psycopg2.connect(own_pg.url)
    try:
        assert [(k, s) for k, s, _, _ in _rows(conn)] == [(k, "tagged") for k in keys]
    finally:
        conn.close()
    assert "database unavailable" in log.read_text(errors="replace")  # the fault did happen


def test_postgres_down_when_retries_run_out_loses_nothing(own_pg, redis_url, moto_endpoint,
                                                          photos, tmp_path) -> None:  # fmt: skip
    """With retries off and Postgres down, a photo cannot even be parked as failed: it keeps
    its message (re-queued with backoff) instead of being acked away, and so does a delete;
    once Postgres is back every photo and the delete are recorded."""
    from celery import Celery

    bucket, keys = photos
    log = tmp_path / "worker.log"
    env = worker_env(own_pg.url, redis_url, moto_endpoint, SIGHTLINE_DB_TIMEOUT_S="2",
                     SIGHTLINE_RETRY_BASE_S="0.5", SIGHTLINE_MAX_RETRIES="0")  # fmt: skip
    worker = start_worker(env, "--batch-size", "4", log=log)
    sender = Celery(broker=redis_url, set_as_current=False)
    try:
        _send(sender, "sightline.tag", "tag", bucket, keys[:1], "10")
        wait_for(lambda: _count(own_pg.url) == 1, timeout=120, what=f"first photo ({log})")
        own_pg.stop()
        _send(sender, "sightline.tag", "tag", bucket, keys[1:4], "10")
        # really deleted: the worker reconciles a delete with HEAD before destroying data
        boto3.client("s3", endpoint_url=moto_endpoint).delete_object(Bucket=bucket, Key=keys[0])
        _send(sender, "sightline.forget", "maintenance", bucket, keys[:1], "20")
        wait_for(
            lambda: log.read_text(errors="replace").count("cannot park") >= 3,
            timeout=60,
            what=f"photos that cannot be parked ({log})",
        )
        own_pg.start()
        # the delete first: until it lands the first photo is tagged too, so "three tagged"
        # could be it and two of the others while the third still waits out its backoff
        wait_for(lambda: _count(own_pg.url, "deleted") == 1, timeout=120, what="the delete")
        # A photo whose last try met Postgres still starting ("not yet accepting
        # connections") with retries off is parked as failed the moment it can be: recorded
        # too, and re-run by `backfill --failed`.
        wait_for(
            lambda: _count(own_pg.url) + _count(own_pg.url, "failed") == 3,
            timeout=120,
            what=f"three recorded ({log})",
        )
    finally:
        stop_worker(worker)
    conn = psycopg2.connect(own_pg.url)
    try:
        rows = _rows(conn)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT key, error FROM photos WHERE status = 'failed'")
            errors = dict(cur.fetchall())
    finally:
        conn.close()
    assert [k for k, _, _, _ in rows] == keys[:4]
    assert rows[0][1] == "deleted" and {s for _, s, _, _ in rows[1:]} <= {"tagged", "failed"}
    assert all("Postgres" in e or "database" in e for e in errors.values()), errors


# ------------------------------------------------------------------ events out of order


def _drained(r: redis.Redis) -> bool:
    return r.llen("tag") == 0 and r.llen("maintenance") == 0 and r.hlen("unacked") == 0


def test_out_of_order_events_end_in_the_newest_state(db, db_url, redis_url, moto_endpoint,
                                                     photos, tmp_path) -> None:  # fmt: skip
    """Through handler -> Redis -> worker, whatever order events for one key arrive and are
    processed in, the row ends in the newest event's state (by sequencer, else event time)."""
    bucket, keys = photos
    a, b, c, d, e = keys[:5]
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    for gone in (b, c):  # their newest event is a delete: the objects are really gone
        s3.delete_object(Bucket=bucket, Key=gone)
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env(db_url, redis_url, moto_endpoint), log=log)
    publisher = CeleryPublisher(redis_url, timeout_s=2)
    r = redis.Redis.from_url(redis_url)
    try:
        # The newest event is processed first, then the older ones arrive.
        deliver(publisher, [record(bucket, a, seq="0020", etag="a-new"),
                            record(bucket, b, seq="0030", created=False),
                            record(bucket, e, seq=None, etag="e-new",
                                   at="2024-06-02T00:00:00.000Z")])  # fmt: skip
        wait_for(lambda: len(_rows(db)) == 3 and _drained(r), timeout=120, what=f"first ({log})")
        deliver(publisher, [record(bucket, a, seq="0010", etag="a-old"),
                            record(bucket, b, seq="0020", etag="b-old"),
                            record(bucket, e, seq=None, etag="e-old",
                                   at="2024-06-01T00:00:00.000Z")])  # fmt: skip
        # Several events for one key in flight together, in shuffled order and invocations.
        mixed = [record(bucket, c, seq="0010", etag="c1"),
                 record(bucket, c, seq="0020", created=False),
                 record(bucket, c, seq="0015", etag="c15"),
                 record(bucket, d, seq="0001", etag="d1"),
                 record(bucket, d, seq="0003", etag="d3"),
                 record(bucket, d, seq="0002", etag="d2")]  # fmt: skip
        random.Random(8).shuffle(mixed)
        for rec in mixed:
            deliver(publisher, [rec])
        time.sleep(1)
        wait_for(lambda: _drained(r), timeout=120, what=f"every event consumed ({log})")
        time.sleep(1)  # a batch flushed at the last ack writes in the same moment
    finally:
        publisher.close()
        stop_worker(worker)
    state = {k: (s, etag) for k, s, etag, _ in _rows(db)}
    assert state == {
        a: ("tagged", "a-new"),
        b: ("deleted", None),
        c: ("deleted", None),
        d: ("tagged", "d3"),
        e: ("tagged", "e-new"),
    }
