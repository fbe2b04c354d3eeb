"""The envelopes around object records, as read-only views (SQS message, SNS notification,
MinIO webhook body), and the unwrapping of an invocation into its retry units and, inside
each, its object records.

Shapes recognised: S3 notification (``Records[].s3``, from S3 or MinIO), the MinIO webhook
body, SQS batches (``Records[].body``), SNS (``Records[].Sns.Message``, or an SNS message as
an SQS body), EventBridge events (direct or as an SQS body), and ``s3:TestEvent``.
Nothing here raises for one bad record: it becomes a ``Broken`` item next to the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.events import EventBridgeEvent, EventError, S3Record, optional_text


class SQSMessage:
    """One message of a Lambda SQS batch: the unit that batchItemFailures names."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def message_id(self) -> str | None:
        return optional_text(self.raw.get("messageId"))

    def payload(self) -> Any:
        return _json(self.raw.get("body"), "SQS body")


class SNSNotification:
    """An SNS message: the ``Sns`` object of a Lambda SNS record, or an SQS body from SNS."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def type(self) -> str | None:
        """SNS's message type ("Notification" when absent, as Lambda's records may leave it);
        None when it is not a string."""
        kind = self.raw.get("Type")
        if kind is None or kind == "":
            return "Notification"
        return kind if isinstance(kind, str) else None

    @property
    def message_id(self) -> str | None:
        return optional_text(self.raw.get("MessageId"))

    def payload(self) -> Any:
        return _json(self.raw.get("Message"), "SNS Message")


class MinioNotification:
    """The body MinIO's webhook target POSTs: ``{"EventName", "Key", "Records": [...]}``."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def event_name(self) -> str:
        return str(self.raw.get("EventName") or "")

    @property
    def key(self) -> str:
        """``bucket/key``, already decoded by MinIO (for logs; identity comes from Records)."""
        return str(self.raw.get("Key") or "")

    @property
    def records(self) -> list[Any] | None:
        records = self.raw.get("Records")
        return records if isinstance(records, list) else None


def is_sqs_event(event: Mapping[str, Any]) -> bool:
    """A Lambda SQS batch: the only envelope whose messages are retried one by one."""
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, Mapping) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def _json(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise EventError(f"{what} is not a string")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise EventError(f"{what} is not JSON: {exc}") from None
    except RecursionError:  # "[[[[…": under SQS's 256 KiB, too deep for json
        raise EventError(f"{what} is not an event: JSON nested too deep") from None


# SNS-in-SQS nests twice at most (SQS -> SNS -> S3); anything deeper is not a real shape.
_MAX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Skip:
    """Not an object record and not an error (S3's test event, SNS control messages)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Broken:
    """A record or message the handler cannot read."""

    reason: str


Item = S3Record | EventBridgeEvent | Skip | Broken


@dataclass(frozen=True, slots=True)
class Unit:
    """What the source retries on its own: one SQS message, or the whole direct event."""

    message_id: str | None
    items: tuple[Item, ...]


def iter_units(event: Mapping[str, Any]) -> Iterator[Unit]:
    """The retry units of one invocation, each with its items in order."""
    if is_sqs_event(event):
        for raw in event["Records"]:
            message = SQSMessage(raw)
            try:
                items = tuple(iter_items(message.payload()))
            except EventError as exc:
                items = (Broken(str(exc)),)
            yield Unit(message.message_id, items)
    else:
        yield Unit(None, tuple(iter_items(event)))


def iter_items(payload: Any, depth: int = 0) -> Iterator[Item]:
    """Every object record in one payload, unwrapping SNS; bad parts become ``Broken``."""
    if depth > _MAX_DEPTH:
        yield Broken("envelopes nested too deep")
        return
    if not isinstance(payload, Mapping):
        yield Broken("event is not a JSON object")
        return
    if payload.get("Event") == "s3:TestEvent":
        yield Skip("s3:TestEvent")
    elif "detail-type" in payload:
        yield EventBridgeEvent(payload)
    elif "TopicArn" in payload and "Message" in payload:  # an SNS message delivered to SQS
        yield from _sns(SNSNotification(payload), depth)
    elif "EventName" in payload and "Key" in payload:  # MinIO's webhook body
        yield from _minio(MinioNotification(payload))
    elif isinstance(payload.get("Records"), list):
        if not payload["Records"]:
            yield Broken("notification has an empty 'Records' list")
        for raw in payload["Records"]:
            yield from _record(raw, depth)
    else:
        yield Broken("not a known event envelope (S3, SQS, SNS, EventBridge or MinIO)")


def _record(raw: Any, depth: int) -> Iterator[Item]:
    if not isinstance(raw, Mapping):
        yield Broken("record is not a JSON object")
    elif isinstance(raw.get("Sns"), Mapping):
        yield from _sns(SNSNotification(raw["Sns"]), depth)
    elif "s3" in raw:
        yield S3Record(raw)
    elif raw.get("eventSource") == "aws:sqs":
        yield Broken("an SQS message inside another envelope")
    else:
        yield Broken("record is neither an S3 nor an SNS record")


_SNS_CONTROL = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})


def _sns(note: SNSNotification, depth: int) -> Iterator[Item]:
    if note.type in _SNS_CONTROL:
        yield Skip(f"SNS {note.type}")
        return
    if note.type != "Notification":  # not skipped: a malformed envelope may hold an upload
        yield Broken(f"SNS Type is not a message type: {json.dumps(note.raw.get('Type'))[:80]}")
        return
    try:
        inner = note.payload()
    except EventError as exc:
        yield Broken(str(exc))
        return
    yield from iter_items(inner, depth + 1)


def _minio(note: MinioNotification) -> Iterator[Item]:
    records = note.records
    if not records:
        yield Broken(f"MinIO notification for {note.key!r} has no records")
        return
    for raw in records:
        yield from _record(raw, 0)
