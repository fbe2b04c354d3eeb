"""The worker's settings, read once at a process's entry point and passed down as arguments.

``models/`` never imports this module; the handler's own settings are ``handlers/config.py``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from handlers.config import (
    DATABASE_SCHEMES,
    SettingsError,
    check_broker_url,
    check_url,
)
from handlers.contract import parse_broker_options

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# The networks models/network.py builds (kept here so reading settings does not import torch;
# tests/test_config.py checks the two agree).
ARCH_NAMES = ("wide_resnet50_2", "resnet50", "tiny")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _env_bool(name: str, default: bool = False) -> bool:
    value = (os.environ.get(name) or "").strip().lower()
    if not value:
        return default
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise SettingsError(
        f"{name} must be one of {'/'.join(_TRUE + _FALSE)}, got {os.environ[name]!r}"
    )


_DAY_S = 86_400.0  # no wait, limit or timeout here is meant to be longer


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {value!r}") from None


def _positive(name: str, default: float, most: float = _DAY_S) -> float:
    """Above 0 and at most ``most`` (infinity and 1e308 overflowed the arithmetic after it)."""
    value = _env_float(name, default)
    if not 0 < value <= most:  # NaN fails too
        raise SettingsError(
            f"{name} must be above 0 and at most {most:,g}, got {os.environ.get(name)!r}"
        )
    return value


def _not_negative(name: str, default: float, most: float = _DAY_S) -> float:
    value = _env_float(name, default)
    if not 0 <= value <= most:  # NaN fails too
        raise SettingsError(
            f"{name} must be 0 or more and at most {most:,g}, got {os.environ.get(name)!r}"
        )
    return value


def _env_count(name: str, default: int, *, least: int = 1, most: int = 2**62) -> int:
    """A whole number from ``least`` to ``most``; SettingsError otherwise (never clamped)."""
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not least <= value <= most:
        bound = f">= {least}" if most == 2**62 else f"from {least} to {most:,}"
        raise SettingsError(f"{name} must be a whole number {bound}, got {raw!r}")
    return value


def _env_arch(name: str, default: str) -> str:
    value = (os.environ.get(name) or "").strip() or default
    if value not in ARCH_NAMES:
        raise SettingsError(f"{name} must be one of {', '.join(ARCH_NAMES)}, got {value!r}")
    return value


def _env_device(name: str, default: str) -> str:
    value = (os.environ.get(name) or "").strip().lower() or default
    if not _DEVICE.match(value):
        raise SettingsError(f"{name} must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def _env_port(name: str) -> int | None:
    value = (os.environ.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SettingsError(f"{name} must be a TCP port (1-65535), got {value!r}")
    return int(value)


def _env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = (os.environ.get(name) or "").strip().lower() or default
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _broker_options(raw: str | None) -> dict[str, Any]:
    try:
        return parse_broker_options(raw)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


# The worker's settings and their defaults (None: unset), for `sightline config show`.
WORKER_DEFAULTS: dict[str, str | None] = {
    "DATABASE_URL": None,
    "CELERY_BROKER_URL": None,
    "SIGHTLINE_BROKER_OPTIONS": None,
    "SIGHTLINE_S3_ENDPOINT_URL": None,
    "SIGHTLINE_WEIGHTS": None,
    "SIGHTLINE_ALLOW_UNTRAINED": "0",
    "SIGHTLINE_ARCH": "wide_resnet50_2",
    "SIGHTLINE_DEVICE": "auto",
    "SIGHTLINE_CPU_BF16": "auto",
    "SIGHTLINE_SCENE_MAP": None,
    "SIGHTLINE_SIFT": None,
    "SIGHTLINE_ALBUMS_PER_PHOTO": "3",
    "SIGHTLINE_MAX_OBJECT_BYTES": str(64 * 1024 * 1024),
    "SIGHTLINE_MAX_PIXELS": "100000000",
    "SIGHTLINE_BATCH_SIZE": "16",
    "SIGHTLINE_BATCH_WAIT_MS": "200",
    "SIGHTLINE_MAX_RETRIES": "5",
    "SIGHTLINE_RETRY_BASE_S": "2",
    "SIGHTLINE_BATCH_TIME_LIMIT_S": "120",
    "SIGHTLINE_DB_TIMEOUT_S": "30",
    "SIGHTLINE_S3_TIMEOUT_S": "30",
    "SIGHTLINE_METRICS_PORT": None,
    "SIGHTLINE_LOG_FORMAT": "text",
    "SIGHTLINE_WRITE_PATH": "copy",
    # Read elsewhere, shown by `config show` all the same (README's configuration table).
    "SIGHTLINE_DATA_DIR": "~/.local/share/sightline",
    "SIGHTLINE_MAX_EVENT_AGE": "15d",
}


BACKOFF_CAP_S = 300.0  # the longest retry backoff, whatever the retry count
# A worker prefetches two batches per batch slot (workers/app.py): a message may wait behind
# them, then for its own batch.
BATCHES_IN_FLIGHT = 3


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None: the embedded PostgreSQL 18 database
    broker_url: str | None = None  # None: the embedded default (SQS on the local endpoint)
    # SIGHTLINE_BROKER_OPTIONS, parsed once: kombu transport options
    broker_options: dict[str, Any] = field(default_factory=dict)
    s3_endpoint_url: str | None = None  # None: AWS itself
    weights: str | None = None
    allow_untrained: bool = False
    arch: str = "wide_resnet50_2"
    device: str = "auto"
    cpu_bf16: str = "auto"  # auto: bf16 forward passes where the CPU has avx512_bf16 or AMX
    scene_map: str | None = None  # None: models/data/scene_map.csv
    sift: str | None = None  # None: models/data/sift_excluded.txt; "none": keep all 365
    albums_per_photo: int = 3  # K: a photo is filed in at most K scene albums
    max_object_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 100_000_000
    batch_size: int = 16
    batch_wait_ms: float = 200.0
    max_retries: int = 5
    retry_base_s: float = 2.0  # backoff: uniform(0, min(300 s, base * 2**retry))
    # The longest a batch may take (Celery's hard time limit on the prefork pool; on the
    # threads pool a budget the S3 and database timeouts keep). Sets the visibility timeout.
    batch_time_limit_s: float = 120.0
    db_timeout_s: float = 30.0
    s3_timeout_s: float = 30.0
    metrics_port: int | None = None  # None: no /metrics endpoint
    log_format: str = "text"  # "text" | "json"
    # Batch writes: "function" (sightline_write_photos, one sub-transaction per photo) or
    # "copy" (binary COPY + one set-based upsert, workers/photo_copy.py; falls back to the
    # function for a batch it refuses). Copy by default: the same rows (tests/test_photo_copy.py)
    # at about four times the function's rows/s (docs/library.md).
    write_path: str = "copy"

    @classmethod
    def from_env(cls) -> Settings:
        """The settings in the environment (filled from sightline.toml by the entry point);
        raises SettingsError, in one line, for a value that cannot be used."""
        env = os.environ
        s3 = (
            env.get("SIGHTLINE_S3_ENDPOINT_URL")
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or None
        )
        return cls(
            database_url=check_url("DATABASE_URL", env.get("DATABASE_URL"), DATABASE_SCHEMES),
            broker_url=check_broker_url(env.get("CELERY_BROKER_URL") or None),
            broker_options=_broker_options(env.get("SIGHTLINE_BROKER_OPTIONS")),
            s3_endpoint_url=check_url("SIGHTLINE_S3_ENDPOINT_URL", s3, ("http", "https")),
            weights=env.get("SIGHTLINE_WEIGHTS") or None,
            allow_untrained=_env_bool("SIGHTLINE_ALLOW_UNTRAINED"),
            arch=_env_arch("SIGHTLINE_ARCH", "wide_resnet50_2"),
            device=_env_device("SIGHTLINE_DEVICE", "auto"),
            cpu_bf16=_env_choice("SIGHTLINE_CPU_BF16", ("auto", "on", "off"), "auto"),
            scene_map=env.get("SIGHTLINE_SCENE_MAP") or None,
            sift=env.get("SIGHTLINE_SIFT") or None,
            albums_per_photo=_env_count("SIGHTLINE_ALBUMS_PER_PHOTO", 3),
            # whole numbers: 0.5 passed "above 0", then was 0 and refused every photo
            max_object_bytes=_env_count("SIGHTLINE_MAX_OBJECT_BYTES", 64 * 1024 * 1024),
            max_pixels=_env_count("SIGHTLINE_MAX_PIXELS", 100_000_000),
            batch_size=_env_count("SIGHTLINE_BATCH_SIZE", 16),
            batch_wait_ms=_not_negative("SIGHTLINE_BATCH_WAIT_MS", 200.0, most=_DAY_S * 1000),
            max_retries=_env_count("SIGHTLINE_MAX_RETRIES", 5, least=0, most=1000),
            retry_base_s=_not_negative("SIGHTLINE_RETRY_BASE_S", 2.0),
            batch_time_limit_s=_positive("SIGHTLINE_BATCH_TIME_LIMIT_S", 120.0),
            db_timeout_s=_positive("SIGHTLINE_DB_TIMEOUT_S", 30.0),
            s3_timeout_s=_positive("SIGHTLINE_S3_TIMEOUT_S", 30.0),
            metrics_port=_env_port("SIGHTLINE_METRICS_PORT"),
            log_format=_env_choice("SIGHTLINE_LOG_FORMAT", ("text", "json"), "text"),
            write_path=_env_choice("SIGHTLINE_WRITE_PATH", ("function", "copy"), "copy"),
        )

    def visibility_timeout_s(self, batch_wait_ms: float | None = None) -> int:
        """Seconds a broker may leave a taken, unacknowledged message with its worker before
        it hands it to another: the longest a live worker can legitimately hold one.

        That is the batch window, plus ``BATCHES_IN_FLIGHT`` batch time limits (the batches
        prefetched ahead of it, then its own), plus the longest retry backoff (a retry is
        re-published with a countdown, and Redis keeps a waiting retry unacknowledged).
        Defaults: 0.2 + 3 x 120 + min(300, 2 x 2**5) = 424.2 -> 425 s, about 7 minutes.
        """
        wait_s = (self.batch_wait_ms if batch_wait_ms is None else batch_wait_ms) / 1000.0
        backoff = min(BACKOFF_CAP_S, self.retry_base_s * 2 ** max(0, self.max_retries))
        return math.ceil(wait_s + BATCHES_IN_FLIGHT * self.batch_time_limit_s + backoff)

    def transport_options(self, batch_wait_ms: float | None = None) -> dict[str, Any]:
        """The broker's transport options: the derived visibility timeout (Redis, SQS) under
        whatever SIGHTLINE_BROKER_OPTIONS sets explicitly.

        Redis also sweeps for abandoned messages every ``unacked_restore_interval`` seconds
        (kombu's default is about 100 s), so redelivery comes within the timeout plus that.
        RabbitMQ has no visibility timeout: a dead consumer's messages return when its
        connection closes (heartbeats notice a silent peer); the options are left alone.
        """
        scheme = (self.broker_url or "").split("://", 1)[0].split("+", 1)[0].lower()
        derived: dict[str, Any] = {}
        if scheme in ("redis", "rediss", "sqs"):
            timeout = self.visibility_timeout_s(batch_wait_ms)
            derived["visibility_timeout"] = timeout
        if scheme in ("redis", "rediss"):
            derived["unacked_restore_interval"] = max(
                1, min(10, derived["visibility_timeout"] // 10)
            )
            derived["unacked_restore_throttle"] = 1
        return {**derived, **self.broker_options}
