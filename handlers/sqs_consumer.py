"""A long-running SQS poller doing what Lambda's SQS event source does, for plain machines.

    sightline consume sqs --queue URL

Per round: receive up to 10 messages (long polling), pass them to the handler in Lambda's SQS
event shape, delete the messages the handler did not report in ``batchItemFailures``. A failed
message is left alone: it stays invisible until the queue's visibility timeout ends, then comes
back (and after the queue's ``maxReceiveCount`` goes to its dead-letter queue, as with Lambda).
While a batch is in hand a heartbeat (ChangeMessageVisibility) keeps its messages invisible, so
a slow batch is never handed to a second consumer. A handler that raises fails the whole batch
(Lambda's rule); the poller logs it and goes on. ``stop()`` (SIGTERM, SIGINT) ends the loop
after the batch in hand; an idle long poll is cut short.

boto3 is imported by the caller (the CLI): this module only calls the client it is given, so
``handlers/`` keeps its light import on the Lambda path.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sightline.consumer")

Handler = Callable[[dict[str, Any], Any], dict[str, Any] | None]
MAX_BATCH = 10  # SQS ReceiveMessage / DeleteMessageBatch limit


def lambda_sqs_event(messages: Sequence[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Received SQS messages in the shape Lambda passes them to a function."""
    region = queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else ""
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
                "awsRegion": region,
            }
            for m in messages
        ]
    }


@dataclass
class ConsumerStats:
    batches: int = 0
    received: int = 0
    deleted: int = 0
    failed: int = 0  # left on the queue for redelivery
    heartbeats: int = 0


class _Interrupted(BaseException):  # not Exception: botocore must not swallow it
    """Raised by the signal handler to cut an idle long poll short."""


class _Heartbeat:
    """Extends the visibility of the messages in hand every ``every_s`` until stopped."""

    def __init__(
        self, sqs: Any, queue_url: str, handles: list[str], extend_s: int, every_s: float
    ) -> None:
        self.sqs, self.queue_url, self.handles = sqs, queue_url, handles
        self.extend_s, self.every_s = extend_s, every_s
        self.beats = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqs-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                for chunk in _chunks(self.handles, MAX_BATCH):
                    got = self.sqs.change_message_visibility_batch(
                        QueueUrl=self.queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": self.extend_s}
                            for i, h in enumerate(chunk)
                        ],
                    )
                    for f in got.get("Failed", []):
                        log.warning("heartbeat refused for a message: %s", f.get("Message"))
                self.beats += 1
            except Exception as exc:  # the next beat tries again; the batch goes on
                log.warning("heartbeat failed: %s: %s", type(exc).__name__, exc)


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class SqsConsumer:
    """Poll one SQS queue and feed its batches to a Lambda-style ``handler(event, context)``.

    ``visibility_timeout_s``: how long a message in hand stays hidden; None reads the queue's
    own ``VisibilityTimeout``. The heartbeat fires every third of it (at least every 0.5 s)
    and re-hides the batch for that long again. ``wait_s``: the long poll, 0-20 s.
    Raises ValueError for a batch size outside 1-10 and lets a missing queue's ClientError
    out of the constructor (it reads the queue's ARN first).
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = MAX_BATCH,
        wait_s: int = 20,
        visibility_timeout_s: int | None = None,
        error_pause_s: float = 1.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch size must be 1-{MAX_BATCH}, got {batch_size}")
        if not 0 <= wait_s <= 20:
            raise ValueError(f"wait must be 0-20 s (SQS long polling), got {wait_s}")
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.batch_size, self.wait_s, self.error_pause_s = batch_size, wait_s, error_pause_s
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn", "VisibilityTimeout"]
        )["Attributes"]
        self.queue_arn = attrs["QueueArn"]
        vt = attrs["VisibilityTimeout"] if visibility_timeout_s is None else visibility_timeout_s
        self.visibility_timeout_s = max(1, int(vt))
        self.heartbeat_s = max(0.5, self.visibility_timeout_s / 3)
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self._receiving = False

    # -- stopping

    def stop(self) -> None:
        """Stop after the batch in hand (safe from any thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop; an idle long poll is interrupted at once.

        Main thread only. A batch already received is always finished: the interruption is
        raised only while a receive is outstanding, whose messages (if any) simply come back
        after the visibility timeout.
        """

        def on_signal(signum: int, frame: Any) -> None:
            log.info("signal %d: stopping after the batch in hand", signum)
            self._stop.set()
            if self._receiving:
                raise _Interrupted

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- the loop

    def run(self) -> ConsumerStats:
        """Poll until stopped; returns the counts."""
        log.info(
            "consuming %s (batch %d, long poll %d s, visibility %d s, heartbeat every %.1f s)",
            self.queue_url, self.batch_size, self.wait_s, self.visibility_timeout_s,
            self.heartbeat_s,
        )  # fmt: skip
        while not self._stop.is_set():
            self.poll_once()
        log.info(
            "stopped: %d batches, %d messages, %d deleted, %d left for redelivery",
            self.stats.batches, self.stats.received, self.stats.deleted, self.stats.failed,
        )  # fmt: skip
        return self.stats

    def poll_once(self) -> tuple[int, int]:
        """One receive-handle-delete round; returns (messages received, messages failed)."""
        messages = self._receive()
        if not messages:
            return 0, 0
        self.stats.batches += 1
        self.stats.received += len(messages)
        with _Heartbeat(
            self.sqs,
            self.queue_url,
            [m["ReceiptHandle"] for m in messages],
            self.visibility_timeout_s,
            self.heartbeat_s,
        ) as beat:
            failed = self._handle(messages)
        self.stats.heartbeats += beat.beats
        done = [m for m in messages if m["MessageId"] not in failed]
        self._delete(done)
        self.stats.failed += len(messages) - len(done)
        if failed:
            log.warning(
                "%d of %d messages failed; left for redelivery after the visibility timeout",
                len(messages) - len(done), len(messages),
            )  # fmt: skip
        return len(messages), len(messages) - len(done)

    def _receive(self) -> list[dict[str, Any]]:
        try:
            self._receiving = True
            try:
                if self._stop.is_set():
                    return []
                return self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self.batch_size,
                    WaitTimeSeconds=self.wait_s,
                    AttributeNames=["All"],
                ).get("Messages", [])
            finally:
                self._receiving = False
        except _Interrupted:
            return []
        except Exception as exc:  # throttled, network: pause and poll again
            log.warning("receive failed: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.error_pause_s)
            return []

    def _handle(self, messages: list[dict[str, Any]]) -> set[str]:
        """Message ids the handler reported failed; all of them when it raised."""
        event = lambda_sqs_event(messages, self.queue_arn)
        try:
            response = self.handler(event, None) or {}
        except Exception as exc:  # Lambda fails the whole batch when the function raises
            log.error("handler raised, the whole batch is retried: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.error_pause_s)
            return {m["MessageId"] for m in messages}
        return {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}

    def _delete(self, done: list[dict[str, Any]]) -> None:
        for i in range(0, len(done), MAX_BATCH):
            chunk = done[i : i + MAX_BATCH]
            try:
                got = self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]}
                             for j, m in enumerate(chunk)],
                )  # fmt: skip
            except Exception as exc:  # the tasks are sent: a redelivery is a harmless repeat
                log.warning("delete failed: %s: %s (messages will repeat)", type(exc).__name__, exc)
                continue
            failures = got.get("Failed", [])
            self.stats.deleted += len(chunk) - len(failures)
            for f in failures:
                log.warning("delete refused for a message: %s", f.get("Message"))
