"""Events shaped as S3 and Lambda's SQS event source shape them, and a stand-in for that
source: receive a batch, invoke the handler with the SQS envelope, delete (or stop
re-sending) only the messages the handler did not report as failed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

from handlers.sqs_consumer import lambda_sqs_event


def s3_record(
    bucket: str,
    key: str,
    *,
    created: bool = True,
    sequencer: str | None = None,
    etag: str | None = "e",
    size: int | None = 1000,
    event_time: str = "2024-06-01T12:00:00.000Z",
) -> dict[str, Any]:
    """One S3 notification record (eventVersion 2.1), the key URL-encoded as S3 sends it.

    A delete carries no eTag or size, as S3 sends it.
    """
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if created:
        obj.update({"eTag": etag, "size": size})
    if sequencer:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": event_time,
        "eventName": "ObjectCreated:Put" if created else "ObjectRemoved:Delete",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
    }


def sqs_event(bodies: Mapping[str, Any]) -> dict[str, Any]:
    """A Lambda SQS event: message id -> the S3 notification it carries."""
    return {
        "Records": [
            {
                "messageId": mid,
                "receiptHandle": f"rh-{mid}",
                "body": json.dumps(body),
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:uploads",
                "awsRegion": "us-east-1",
            }
            for mid, body in bodies.items()
        ]
    }


def deliver_until_published(
    records: list[dict[str, Any]],
    handler: Callable[[dict[str, Any]], list[str]],
    *,
    batch: int = 10,
    pause_s: float = 0.5,
    timeout_s: float | None = None,
) -> tuple[int, int]:
    """Each record as one SQS message, ``batch`` messages per invocation; messages the
    handler reports failed (``handler`` returns their ids) are sent again, as Lambda's SQS
    source retries them, until every one is through. Returns (invocations, retried)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    invocations = retried = 0
    for start in range(0, len(records), batch):
        pending = {f"m{start + j}": r for j, r in enumerate(records[start : start + batch])}
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} messages never got through")
            invocations += 1
            failed = set(handler(sqs_event({m: {"Records": [r]} for m, r in pending.items()})))
            retried += len(failed)
            pending = {m: r for m, r in pending.items() if m in failed}
            if pending:
                time.sleep(pause_s)
    return invocations, retried


def poll_once(
    sqs: Any,
    queue_url: str,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    *,
    batch_size: int = 10,
    wait_s: int = 1,
) -> tuple[int, int]:
    """One receive-invoke-delete round; returns (messages handled, messages failed)."""
    got = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=batch_size,
        WaitTimeSeconds=wait_s,
        AttributeNames=["All"],
    ).get("Messages", [])
    if not got:
        return 0, 0
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    response = handler(lambda_sqs_event(got, arn), None) or {}
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    done = [m for m in got if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
            ],
        )
    return len(got), len(failed)
