"""Worker logging: plain text for a terminal, one JSON object per line for a log pipeline.

A log call about one photo passes ``extra=photo_fields(task)``; the JSON formatter lifts the
photo's identity (bucket, key, owner, version) and any ``fields`` (outcome, timings) to
top-level fields a log search can filter on. In JSON mode every line the process writes is
JSON: Celery's banner is off (``--quiet``), its loggers, Python warnings and the lines Celery
writes past logging (shutdown notices) all go through the JSON formatter.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

_IDENTITY = ("bucket", "key", "owner", "version_id")


def photo_fields(task: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """The ``extra`` for a log call about one photo, with more top-level JSON ``fields``."""
    photo = {k: task.get(k) for k in _IDENTITY if task.get(k) is not None}
    return {"photo": photo, "fields": fields}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, photo identity, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        photo = getattr(record, "photo", None)
        if isinstance(photo, Mapping):
            out.update(photo)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update(fields)
        task_id = getattr(record, "task_id", None)  # set by Celery's task logger
        if task_id:
            out["task_id"] = task_id
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_json_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines, and keep Celery's hands off.

    Celery sets up its own handlers at worker start unless a receiver of its
    ``setup_logging`` signal does it; this is that receiver.
    """
    from celery.signals import setup_logging

    def _setup(**_: Any) -> None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers = [handler]
        root.setLevel(level.upper())

    _setup()
    setup_logging.connect(_setup, weak=False)
    logging.captureWarnings(True)  # warnings.warn -> the py.warnings logger -> JSON
    # Celery writes its shutdown notices straight to the terminal, past logging.
    import celery.apps.worker

    say = logging.getLogger("celery.worker")
    celery.apps.worker.safe_say = lambda msg, f=None: say.warning("%s", str(msg).strip())


def json_line(level: str, logger: str, message: str) -> str:
    """One JSON log line for a message written before (or without) logging: CLI errors."""
    return json.dumps(
        {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "logger": logger,
            "message": message,
        },
        ensure_ascii=False,
    )
