"""Settings, read once at a process's entry point and passed down as arguments.

``models/`` never imports this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def data_dir() -> Path:
    """The user's data folder for sightline (embedded Postgres lives here)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(os.environ.get("SIGHTLINE_DATA_DIR") or Path(base) / "sightline")


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise SystemExit(f"sightline: {name} must be a number, got {value!r}") from None


def _env_port(name: str) -> int | None:
    value = (os.environ.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"sightline: {name} must be a TCP port (1-65535), got {value!r}")
    return int(value)


def _env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = (os.environ.get(name) or "").strip().lower() or default
    if value not in choices:
        raise SystemExit(f"sightline: {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None: the embedded PostgreSQL 18 database
    broker_url: str | None = None  # None: the embedded default (SQS on the local endpoint)
    s3_endpoint_url: str | None = None  # None: AWS itself
    weights: str | None = None
    allow_untrained: bool = False
    arch: str = "wide_resnet50_2"
    device: str = "auto"
    scene_map: str | None = None  # None: models/data/scene_map.csv
    sift: str | None = None  # None: models/data/sift_excluded.txt; "none": keep all 365
    owner_pattern: str = "users/{owner}/"
    default_owner: str | None = None
    max_object_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 100_000_000
    batch_size: int = 16
    batch_wait_ms: float = 200.0
    max_retries: int = 5
    retry_base_s: float = 2.0  # backoff: uniform(0, min(300 s, base * 2**retry))
    db_timeout_s: float = 30.0
    s3_timeout_s: float = 30.0
    metrics_port: int | None = None  # None: no /metrics endpoint
    log_format: str = "text"  # "text" | "json"
    # Batch writes: "copy" (binary COPY + one upsert, workers/photo_copy.py) or "function"
    # (sightline_write_photos, one sub-transaction per photo).
    write_path: str = "copy"
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            broker_url=env.get("CELERY_BROKER_URL") or None,
            s3_endpoint_url=env.get("SIGHTLINE_S3_ENDPOINT_URL")
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or None,
            weights=env.get("SIGHTLINE_WEIGHTS") or None,
            allow_untrained=_env_bool("SIGHTLINE_ALLOW_UNTRAINED"),
            arch=env.get("SIGHTLINE_ARCH") or "wide_resnet50_2",
            device=env.get("SIGHTLINE_DEVICE") or "auto",
            scene_map=env.get("SIGHTLINE_SCENE_MAP") or None,
            sift=env.get("SIGHTLINE_SIFT") or None,
            owner_pattern=env.get("SIGHTLINE_OWNER_PATTERN") or "users/{owner}/",
            default_owner=env.get("SIGHTLINE_DEFAULT_OWNER") or None,
            max_object_bytes=int(_env_float("SIGHTLINE_MAX_OBJECT_BYTES", 64 * 1024 * 1024)),
            max_pixels=int(_env_float("SIGHTLINE_MAX_PIXELS", 100_000_000)),
            batch_size=max(1, int(_env_float("SIGHTLINE_BATCH_SIZE", 16))),
            batch_wait_ms=_env_float("SIGHTLINE_BATCH_WAIT_MS", 200.0),
            max_retries=int(_env_float("SIGHTLINE_MAX_RETRIES", 5)),
            retry_base_s=_env_float("SIGHTLINE_RETRY_BASE_S", 2.0),
            db_timeout_s=_env_float("SIGHTLINE_DB_TIMEOUT_S", 30.0),
            s3_timeout_s=_env_float("SIGHTLINE_S3_TIMEOUT_S", 30.0),
            metrics_port=_env_port("SIGHTLINE_METRICS_PORT"),
            log_format=_env_choice("SIGHTLINE_LOG_FORMAT", ("text", "json"), "text"),
            write_path=_env_choice("SIGHTLINE_WRITE_PATH", ("copy", "function"), "copy"),
        )
