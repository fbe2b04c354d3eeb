"""The RabbitMQ broker restarted mid-run, tested the way the Redis restart is
(tests/test_faults.py): a RabbitMQ node of the test's own is killed while the worker tags
and the handler publishes, and comes back; nothing is lost and nothing doubled."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from handlers.publish import CeleryPublisher
from sightline.embedded import free_port
from sightline.samples import synthetic_jpeg
from tests.support import start_worker, stop_worker, wait_for, worker_env
from tests.test_faults import _count, _rows, deliver, record

pytestmark = pytest.mark.slow
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class OwnRabbit:
    """A RabbitMQ node of this test's own: its own name, ports, cookie, data and no plugins,
    so it can be killed and restarted without touching the system's node."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        (folder / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
        (folder / "plugins").write_text("[].\n")
        self.env = dict(
            os.environ,
            HOME=str(folder),  # its own Erlang cookie
            RABBITMQ_NODENAME=f"sightline{self.port}@localhost",
            RABBITMQ_DIST_PORT=str(free_port()),
            RABBITMQ_CONFIG_FILE=str(folder / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(folder / "plugins"),
            RABBITMQ_MNESIA_BASE=str(folder / "mnesia"),
            RABBITMQ_LOG_BASE=str(folder / "log"),
            RABBITMQ_PID_FILE=str(folder / "pid"),
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [RABBITMQ_SERVER],
            env=self.env,
            cwd=self.folder,
            stdout=(self.folder / "server.log").open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as one
        )
        wait_for(lambda: _listening(self.port), timeout=90, what="our RabbitMQ node")

    def kill(self) -> None:
        """A crash, not a polite shutdown: SIGKILL to the whole node."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        wait_for(lambda: not _listening(self.port), timeout=20, what="the node to be gone")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def photos(moto_endpoint: str) -> tuple[str, list[str]]:
    """A bucket with 24 small photos in it (as in tests/test_faults.py)."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"r-{os.urandom(4).hex()}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"users/f/{i:02d}.jpg" for i in range(24)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=i, width=160, height=120))
    return bucket, keys


@pytest.fixture
def own_rabbit() -> Iterator[OwnRabbit]:
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        pytest.skip(f"no {RABBITMQ_SERVER} to run a node of the test's own")
    folder = Path(tempfile.mkdtemp(prefix="sightline-rabbit-"))
    node = OwnRabbit(folder)
    node.start()
    yield node
    node.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_rabbitmq_restart_mid_run_loses_no_photo(
    db, db_url, moto_endpoint, photos, own_rabbit, tmp_path
) -> None:
    """RabbitMQ is killed while the worker is tagging and the handler is publishing; it
    comes back 3 s later. Durable queues and persistent, confirmed messages survive; the
    handler's unconfirmed messages are retried by their source; the worker reconnects by
    itself. Every photo ends tagged, one row each, its tags written once (a message in
    flight at the crash is redelivered and rewritten in place, never added twice)."""
    bucket, keys = photos
    log = tmp_path / "worker.log"
    env = worker_env(db_url, own_rabbit.url, moto_endpoint)
    worker = start_worker(env, "--batch-size", "4", "--batch-wait-ms", "200", log=log)
    publisher = CeleryPublisher(own_rabbit.url, timeout_s=2)
    try:
        first, second = keys[:12], keys[12:]
        deliver(publisher, [record(bucket, k, seq=None) for k in first])
        wait_for(lambda: _count(db_url) >= 4, timeout=120, what=f"first photos ({log})")
        own_rabbit.kill()
        rounds: list[int] = []
        sender = threading.Thread(
            target=lambda: rounds.append(
                deliver(publisher, [record(bucket, k, seq=None) for k in second])
            )
        )
        sender.start()  # publishes into the outage: its messages fail until the node is back
        time.sleep(3)
        own_rabbit.start()
        sender.join(180)
        assert rounds and rounds[0] > 1  # the outage was felt by the handler
        wait_for(
            lambda: _count(db_url) == len(keys), timeout=240, what=f"every photo tagged ({log})"
        )
        assert worker.poll() is None  # the same worker recovered by itself
    finally:
        publisher.close()
        stop_worker(worker)
    rows = _rows(db)
    assert [(k, s) for k, s, _, _ in rows] == [(k, "tagged") for k in keys]
    assert all(attempts <= 2 for *_, attempts in rows)  # at most one redelivery
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*) FROM photo_albums GROUP BY photo_id, rank HAVING count(*) > 1")
        assert cur.fetchall() == []  # no tag written twice
