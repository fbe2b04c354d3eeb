"""A stand-in for Lambda's SQS event source: receive a batch, invoke the handler with the
SQS envelope, delete only the messages the handler did not report as failed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def lambda_sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Shape received SQS messages the way Lambda passes them to a function."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else "",
            }
            for m in messages
        ]
    }


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
