"""What a worker process holds for its lifetime: settings, the model, clients, releases."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import psycopg2

from sightline.settings import Settings
from workers.db import DatabaseError, connect
from workers.errors import ObjectGone, TransientError
from workers.fetch import fetch, s3_client
from workers.inference import SceneLandmarkModel
from workers.photos import PhotoError
from workers.pipeline import LiveRelease, analyse
from workers.store import is_stale, load_live_releases, write_status, write_tagged

log = logging.getLogger("sightline.worker")

_RELEASE_TTL_S = 30.0  # how long a worker trusts its view of the live releases


class WorkerRuntime:
    """Built once at the process entry point; tasks call into it."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.model = SceneLandmarkModel(
            weights=settings.weights,
            allow_untrained=settings.allow_untrained,
            arch=settings.arch,
            device=settings.device,
            scene_map_path=settings.scene_map,
            sift_path=settings.sift,
        )
        self._s3: Any = None
        self._conn: Any = None
        self._releases: dict[str, LiveRelease] = {}
        self._live: list[LiveRelease] = []
        self._live_at = 0.0

    # ------------------------------------------------------------------ clients
    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = s3_client(self.settings.s3_endpoint_url, self.settings.s3_timeout_s)
        return self._s3

    def conn(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.database_url, timeout_s=self.settings.db_timeout_s)
            except DatabaseError as exc:
                raise TransientError(str(exc)) from exc
        return self._conn

    def _drop_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn = None

    def live_releases(self) -> list[LiveRelease]:
        if time.monotonic() - self._live_at > _RELEASE_TTL_S:
            conn = self.conn()
            with conn, conn.cursor() as cur:
                self._live = load_live_releases(cur, self._releases)
            self._live_at = time.monotonic()
        return self._live

    # ------------------------------------------------------------------ tasks
    def tag(self, task: Mapping[str, Any]) -> str:
        """Tag one photo; returns its final status. Raises TransientError to be retried."""
        try:
            return self._tag(task)
        except psycopg2.OperationalError as exc:
            self._drop_conn()
            raise TransientError(f"database unavailable: {exc}") from exc

    def _tag(self, task: Mapping[str, Any]) -> str:
        conn = self.conn()
        with conn, conn.cursor() as cur:
            if is_stale(cur, task):  # a newer event already decided this key
                return "stale"
        try:
            data = fetch(
                self.s3,
                task["bucket"],
                task["key"],
                task.get("version_id"),
                self.settings.max_object_bytes,
            )
        except ObjectGone as exc:
            return self._record(task, "gone", str(exc))
        except PhotoError as exc:
            return self._record(task, "failed", str(exc))
        result = analyse(
            [data], self.model, self.live_releases(), max_pixels=self.settings.max_pixels
        )[0]
        if isinstance(result, PhotoError):
            return self._record(task, "failed", str(result))
        with conn, conn.cursor() as cur:
            applied = write_tagged(cur, task, result)
        return "tagged" if applied is not None else "stale"

    def forget(self, task: Mapping[str, Any]) -> str:
        try:
            return self._record(task, "deleted", None)
        except psycopg2.OperationalError as exc:
            self._drop_conn()
            raise TransientError(f"database unavailable: {exc}") from exc

    def park(self, task: Mapping[str, Any], reason: str) -> None:
        """Retries are spent: leave the photo failed with its reason for an operator."""
        try:
            self._record(task, "failed", f"gave up after retries: {reason}")
        except (psycopg2.Error, TransientError) as exc:
            log.error("cannot park %s/%s: %s", task.get("bucket"), task.get("key"), exc)

    def _record(self, task: Mapping[str, Any], status: str, reason: str | None) -> str:
        if reason:
            log.warning("%s s3://%s/%s: %s", status, task["bucket"], task["key"], reason)
        conn = self.conn()
        with conn, conn.cursor() as cur:
            applied = write_status(cur, task, status, reason)
        return status if applied is not None else "stale"
