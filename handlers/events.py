"""Typed, read-only views over S3 event envelopes, and the one place keys are decoded.

Views hold the raw dict and expose properties: no I/O, no copies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from sightline.contract import normalize_sequencer


class EventError(ValueError):
    """A record the handler cannot read, with the reason in one line."""


def decode_s3_key(raw: str) -> str:
    """S3 and MinIO URL-encode keys with '+' for a space; a literal '+' arrives as %2B."""
    return unquote_plus(raw, encoding="utf-8", errors="strict")


@dataclass(frozen=True)
class ObjectEvent:
    """A normalised object event: what happened to which object, in which order."""

    created: bool  # False: removed
    bucket: str
    key: str  # decoded
    version_id: str | None
    etag: str | None
    size: int | None
    sequencer: str | None  # normalised
    event_time: str | None
    event_name: str
    content_type: str | None = None


class S3Record:
    """One S3 notification record (eventVersion 2.x)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def event_name(self) -> str:
        return str(self.raw.get("eventName") or "")

    @property
    def event_time(self) -> str | None:
        return self.raw.get("eventTime")

    @property
    def s3(self) -> Mapping[str, Any]:
        s3 = self.raw.get("s3")
        if not isinstance(s3, Mapping):
            raise EventError("record has no 's3' object")
        return s3

    @property
    def bucket(self) -> str:
        name = (self.s3.get("bucket") or {}).get("name")
        if not name:
            raise EventError("record has no bucket name")
        return str(name)

    @property
    def object(self) -> Mapping[str, Any]:
        obj = self.s3.get("object")
        if not isinstance(obj, Mapping) or "key" not in obj:
            raise EventError("record has no object key")
        return obj

    def to_event(self) -> ObjectEvent:
        name = self.event_name
        if name.startswith("ObjectCreated:"):
            created = True
        elif name.startswith("ObjectRemoved:"):
            created = False
        else:
            raise EventError(f"unsupported event {name!r}")
        obj = self.object
        try:
            key = decode_s3_key(str(obj["key"]))
        except UnicodeDecodeError as exc:
            raise EventError(f"object key is not valid UTF-8 once decoded: {exc}") from exc
        size = obj.get("size")
        return ObjectEvent(
            created=created,
            bucket=self.bucket,
            key=key,
            version_id=obj.get("versionId") or None,
            etag=obj.get("eTag") or obj.get("etag") or None,
            size=int(size) if size is not None else None,
            sequencer=normalize_sequencer(obj.get("sequencer")),
            event_time=self.event_time,
            event_name=name,
            content_type=obj.get("contentType"),
        )


@dataclass(frozen=True)
class Envelope:
    """One unit the source retries on its own: an SQS message, or a whole direct event."""

    message_id: str | None  # SQS messageId: what batchItemFailures names
    body: Any  # the S3 notification (dict) inside it, or an EventError


def is_s3_test_event(payload: Mapping[str, Any]) -> bool:
    return payload.get("Event") == "s3:TestEvent"


def iter_envelopes(event: Mapping[str, Any]) -> Iterator[Envelope]:
    """Yield the S3 notifications an invocation carries: direct, or inside SQS messages."""
    records = event.get("Records")
    if isinstance(records, list) and records and records[0].get("eventSource") == "aws:sqs":
        for message in records:
            mid = message.get("messageId")
            try:
                body: Any = json.loads(message.get("body") or "")
            except (TypeError, ValueError) as exc:
                body = EventError(f"SQS body is not JSON: {exc}")
            yield Envelope(mid, body)
    else:
        yield Envelope(None, event)


def iter_s3_records(payload: Any) -> Iterator[S3Record]:
    """The S3 records of one notification (none for a test event)."""
    if isinstance(payload, EventError):
        raise payload
    if not isinstance(payload, Mapping):
        raise EventError("notification is not a JSON object")
    if is_s3_test_event(payload):
        return
    records = payload.get("Records")
    if not isinstance(records, list):
        raise EventError("notification has no 'Records' list")
    for r in records:
        if not isinstance(r, Mapping):
            raise EventError("record is not a JSON object")
        yield S3Record(r)
