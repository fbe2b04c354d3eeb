"""The AWS Lambda entry point: ``handlers.lambda_function.handler``.

S3 Batch Operations invocations answer with a result code per task (handlers.batch_operations).
SQS batches answer with ``batchItemFailures`` (enable ReportBatchItemFailures on the event
source mapping). Direct invocations (S3, SNS, EventBridge) are asynchronous: a failed record
raises ``HandlerFailed`` so Lambda retries the event and, after its retries, hands it to the
function's on-failure destination or dead-letter queue.
"""

from __future__ import annotations

import logging
from typing import Any

from handlers import batch_operations
from handlers.config import HandlerConfig, log_level
from handlers.core import handle
from handlers.publish import CeleryPublisher

logging.getLogger().setLevel(log_level())

# Read once per container: Lambda reuses it (and the broker connection) across invocations.
_CONFIG = HandlerConfig.from_env()
_PUBLISHER: CeleryPublisher | None = None


class HandlerFailed(RuntimeError):
    """Some records of a direct invocation failed; raising makes the source retry them."""


def _publisher() -> CeleryPublisher:
    global _PUBLISHER
    if _PUBLISHER is None:
        if not _CONFIG.broker_url:
            raise RuntimeError("CELERY_BROKER_URL is not set")
        _PUBLISHER = CeleryPublisher(_CONFIG.broker_url, _CONFIG.broker_options)
    return _PUBLISHER


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise HandlerFailed(f"the event is not a JSON object but a {type(event).__name__}")
    if batch_operations.is_batch_operations(event):
        # S3 Batch Operations reads a result code per task: failures are answered, not raised.
        return batch_operations.handle(
            event,
            _CONFIG.owners,
            _publisher(),
            allowed_buckets=_CONFIG.allowed_buckets,
            exclude=_CONFIG.exclude,
            opaque_keys=_CONFIG.opaque_keys,
        )
    result = handle(
        event,
        _CONFIG.owners,
        _publisher(),
        allowed_buckets=_CONFIG.allowed_buckets,
        opaque_keys=_CONFIG.opaque_keys,
        exclude=_CONFIG.exclude,
    )
    if result.errors and (not result.from_sqs or result.unreported):
        # not SQS, or an SQS message without a messageId: the whole event is retried
        reasons = "; ".join(sorted({a.reason or "?" for a in result.errors}))
        raise HandlerFailed(f"{len(result.errors)} record(s) failed: {reasons}")
    return result.response()
