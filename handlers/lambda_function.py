"""The AWS Lambda entry point: ``handlers.lambda_function.handler``."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from handlers.core import handle
from handlers.publish import CeleryPublisher
from handlers.rules import OwnerRule

logging.getLogger().setLevel(os.environ.get("SIGHTLINE_LOG_LEVEL", "INFO"))

# Read once per container, as Lambda reuses it across invocations.
_OWNERS = OwnerRule(
    os.environ.get("SIGHTLINE_OWNER_PATTERN") or "users/{owner}/",
    os.environ.get("SIGHTLINE_DEFAULT_OWNER") or None,
)
_PUBLISHER: CeleryPublisher | None = None


def _publisher() -> CeleryPublisher:
    global _PUBLISHER
    if _PUBLISHER is None:
        url = os.environ.get("CELERY_BROKER_URL")
        if not url:
            raise RuntimeError("CELERY_BROKER_URL is not set")
        options = json.loads(os.environ.get("SIGHTLINE_BROKER_OPTIONS") or "{}")
        _PUBLISHER = CeleryPublisher(url, options)
    return _PUBLISHER


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle(event, _OWNERS, _publisher()).response()
