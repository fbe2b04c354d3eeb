"""A worker's row in ``worker_heartbeats`` (migration 0016): written at start and every
``interval_s``, removed at a clean stop, so `sightline status` can list the live workers with
their model, scene map and queues without asking the broker."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import psycopg2

from workers.db import DatabaseError, connect

log = logging.getLogger("sightline.worker")

_APP = "sightline-heartbeat"  # not one of the batch threads' connections
HEARTBEAT_S = 15.0  # status counts a worker live when seen within 3 beats


class Heartbeat:
    """A daemon thread beating for one worker process; ``facts`` gives, at each beat, the
    model version, scene map version and live release versions."""

    def __init__(
        self,
        url: str,
        hostname: str,
        queues: list[str],
        facts: Callable[[], dict[str, Any]],
        *,
        interval_s: float = HEARTBEAT_S,
    ) -> None:
        self.url, self.hostname, self.queues = url, hostname, queues
        self.facts = facts
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sightline-heartbeat", daemon=True)

    def beat(self) -> None:
        """Write the row now (own short connection: the batch threads' stay theirs)."""
        f = self.facts()
        conn = connect(self.url, timeout_s=10, register=False, application=_APP)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO worker_heartbeats (hostname, pid, started_at, seen_at,"
                    " model_version, scene_map_version, queues, releases)"
                    " VALUES (%s, %s, now(), now(), %s, %s, %s, %s)"
                    " ON CONFLICT (hostname) DO UPDATE SET pid = EXCLUDED.pid,"
                    " seen_at = now(), model_version = EXCLUDED.model_version,"
                    " scene_map_version = EXCLUDED.scene_map_version,"
                    " queues = EXCLUDED.queues, releases = EXCLUDED.releases,"
                    " started_at = CASE WHEN worker_heartbeats.pid = EXCLUDED.pid"
                    "   THEN worker_heartbeats.started_at ELSE now() END",
                    (
                        self.hostname,
                        os.getpid(),
                        f.get("model_version"),
                        f.get("scene_map_version"),
                        self.queues,
                        f.get("releases") or [],
                    ),
                )
                # Rows of workers gone for a day are history, not fleet.
                cur.execute(
                    "DELETE FROM worker_heartbeats WHERE seen_at < now() - interval '1 day'"
                )
        finally:
            conn.close()

    def start(self) -> None:
        self.beat()  # at start: a worker that cannot write its row does not start
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except (DatabaseError, psycopg2.Error) as exc:  # the next beat tries again
                log.warning("heartbeat not written: %s", str(exc).strip().splitlines()[0])

    def stop(self) -> None:
        """Stop beating and remove the row (a clean stop: the worker is not live)."""
        self._stop.set()
        with contextlib.suppress(DatabaseError, psycopg2.Error):
            conn = connect(self.url, timeout_s=5, register=False, application=_APP)
            try:
                with conn, conn.cursor() as cur:
                    cur.execute(
                        "DELETE FROM worker_heartbeats WHERE hostname = %s AND pid = %s",
                        (self.hostname, os.getpid()),
                    )
            finally:
                conn.close()
