"""`sightline consume sqs --queue URL`: the event path on a plain machine, as Lambda runs it."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from sightline.cli import CliError

_AWS_QUEUE = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com")
# http(s)://HOST[:PORT]/ACCOUNT/NAME: AWS's form, and a local endpoint's (moto, ElasticMQ).
_QUEUE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+$")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("consume", help="poll an event queue and run the handler (no Lambda)")
    csub = p.add_subparsers(dest="consume_command", metavar="SOURCE", required=True)
    s = csub.add_parser(
        "sqs",
        help="S3 notifications from an SQS queue: what Lambda's SQS event source does",
        description=(
            "Receive batches, run the Lambda handler on them, delete only the messages it did "
            "not report failed, keep slow batches invisible with a heartbeat, and on SIGTERM "
            "finish the batch in hand and exit 0. Broker and owner settings come from the "
            "handler's environment (CELERY_BROKER_URL, SIGHTLINE_OWNER_PATTERN, ...)."
        ),
    )
    s.add_argument("--queue", required=True, help="the queue URL")
    s.add_argument("--batch-size", type=int, default=10, help="messages per batch, 1-10")
    s.add_argument("--wait", type=int, default=20, help="long poll, 0-20 s")
    s.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help="seconds a batch in hand stays hidden (default: the queue's own setting)",
    )
    s.add_argument(
        "--endpoint-url",
        default=None,
        help="SQS endpoint (default: AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, else AWS)",
    )
    s.set_defaults(func=consume_sqs)


def region_of(queue_url: str) -> str | None:
    """The region an AWS queue URL names (https://sqs.REGION.amazonaws.com/...), else None."""
    m = _AWS_QUEUE.match(queue_url)
    return m.group(1) if m else None


def check_queue_url(queue_url: str) -> None:
    """CliError unless ``queue_url`` has a queue URL's shape: http(s)://HOST/ACCOUNT/NAME."""
    if not _QUEUE_URL.match(queue_url):
        raise CliError(
            "--queue must be an SQS queue URL "
            f"(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), got {queue_url!r}"
        )


def consume_sqs(args: argparse.Namespace) -> int:
    from handlers.config import log_level

    check_queue_url(args.queue)  # before any broker or AWS step
    logging.basicConfig(
        level=log_level(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if os.environ.get("SIGHTLINE_LOG_FORMAT", "").strip().lower() == "json":
        from workers.logs import configure_json_logging

        configure_json_logging(log_level())
    if not os.environ.get("CELERY_BROKER_URL"):
        raise CliError("CELERY_BROKER_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        # The very function Lambda runs: its config is read from the environment on import.
        from handlers.lambda_function import handler
    except ValueError as exc:
        raise CliError(str(exc)) from None
    from handlers.sqs_consumer import SqsConsumer

    region = (
        region_of(args.queue)
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    sqs = boto3.client("sqs", endpoint_url=args.endpoint_url, region_name=region or "us-east-1")
    try:
        consumer = SqsConsumer(
            sqs,
            args.queue,
            handler,
            batch_size=args.batch_size,
            wait_s=args.wait,
            visibility_timeout_s=args.visibility_timeout,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot read queue {args.queue}: {exc}") from None
    consumer.install_signal_handlers()
    stats = consumer.run()
    print(
        f"consumed {stats.received} message(s) in {stats.batches} batch(es): "
        f"{stats.deleted} deleted, {stats.failed} left for redelivery",
        file=sys.stderr,
    )
    return 0
