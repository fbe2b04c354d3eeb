"""The object identity (``ObjectEvent``), the one place keys are decoded, and the read-only
views of the two records that name an object: an S3 notification record (from S3 or MinIO)
and an EventBridge event from S3.

Each view is a thin wrapper over the raw dict: properties, no I/O, no copies. Every view
builds its ``ObjectEvent`` through ``object_event``, the only code that turns a key as it
arrives into the key as it is stored. The envelopes around them (SQS, SNS, MinIO's webhook
body) are ``handlers/envelopes.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from handlers.contract import event_time_problem, normalize_sequencer

# Postgres stores the size as bigint; S3's own limit is 5 TiB.
MAX_OBJECT_SIZE = 2**63 - 1
# S3's (and MinIO's) longest key, in UTF-8 bytes: a longer one names no object.
MAX_KEY_BYTES = 1024
_DIGITS = re.compile(r"[0-9]{1,19}")  # int() of 4,300+ digits raises, past 19 it is no size

Kind = Literal["created", "removed", "other"]

# S3 record event names (MinIO prefixes them with "s3:"). Only these change an object's
# content; tagging, ACL, restore, replication and MinIO's PutTagging/PutRetention do not.
_CREATED = frozenset({"Put", "Post", "Copy", "CompleteMultipartUpload"})
_REMOVED = frozenset(
    {
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "ObjectRemoved:DeleteAllVersions",  # MinIO
        "LifecycleExpiration:Delete",
        "LifecycleExpiration:DeleteMarkerCreated",
    }
)
# EventBridge detail types for the same two kinds.
_EB_KINDS: dict[str, Kind] = {"Object Created": "created", "Object Deleted": "removed"}


class EventError(ValueError):
    """A record the handler cannot read, with the reason in one line."""


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """A normalised object event: what happened to which object, in which order."""

    kind: Kind
    bucket: str
    key: str  # decoded: the identity everywhere downstream
    version_id: str | None
    etag: str | None
    size: int | None
    sequencer: str | None  # normalised (handlers.contract.normalize_sequencer)
    event_time: str | None
    event_name: str
    content_type: str | None = None

    @property
    def created(self) -> bool:
        return self.kind == "created"

    def identity(self) -> tuple[Any, ...]:
        """What makes two records the same record (S3 may deliver one twice)."""
        # Without a sequencer only the time tells two writes of the same bytes apart.
        when = self.sequencer or self.event_time
        return (self.bucket, self.key, self.version_id, self.kind, self.etag, self.size, when)


def object_event(
    *,
    kind: Kind,
    bucket: Any,
    raw_key: Any,
    url_encoded: bool,
    version_id: Any = None,
    etag: Any = None,
    size: Any = None,
    sequencer: Any = None,
    event_time: Any = None,
    event_name: str = "",
    content_type: Any = None,
) -> ObjectEvent:
    """The one place a key is decoded; everything else gets the ObjectEvent.

    S3 and MinIO records URL-encode keys with '+' for a space (a literal '+' arrives as
    %2B); EventBridge sends the key as it is.
    """
    if not isinstance(bucket, str) or not bucket:
        raise EventError("record has no bucket name")
    if not isinstance(raw_key, str) or not raw_key:
        raise EventError("record has no object key")
    if url_encoded:
        try:
            key = unquote_plus(raw_key, encoding="utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise EventError(f"object key is not UTF-8 once decoded: {raw_key!r}") from exc
    else:
        key = raw_key
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise EventError(f"object key is longer than S3's {MAX_KEY_BYTES} bytes: {key[:60]!r}…")
    try:
        size_n = byte_count(size)
        when = optional_text(event_time)
        problem = event_time_problem(when) if when is not None else None
        if problem:
            raise EventError(f"event time {when[:60]!r} is {problem}")
    except EventError as exc:  # the object is known by now: say which one
        raise EventError(f"{bucket}/{key[:200]!r}: {exc}") from None
    return ObjectEvent(
        kind=kind,
        bucket=bucket,
        key=key,
        version_id=optional_text(version_id),
        etag=optional_text(etag),
        size=size_n,
        sequencer=normalize_sequencer(optional_text(sequencer)),
        event_time=when,
        event_name=event_name,
        content_type=optional_text(content_type),
    )


def byte_count(size: Any) -> int | None:
    """An object's size: an int, or a string of ASCII digits (``int()`` would also take
    "1_000", " 5" and other scripts' digits); None when absent. EventError otherwise."""
    if size is None:
        return None
    if isinstance(size, str) and _DIGITS.fullmatch(size):
        size = int(size)
    elif isinstance(size, str) and size.isascii() and size.isdigit():
        raise EventError(f"object size is not a byte count: {size[:30]!r}…")
    if isinstance(size, bool) or not isinstance(size, int):
        raise EventError(f"object size is not a number: {str(size)[:40]!r}")
    if not 0 <= size <= MAX_OBJECT_SIZE:
        raise EventError(f"object size is not a byte count: {size!r}")
    return size


def optional_text(value: Any) -> str | None:
    """A field as text; None for a missing or empty one."""
    return str(value) if value not in (None, "") else None


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EventError(f"{what} is not a JSON object")
    return value


class S3Record:
    """One S3 notification record (eventVersion 2.x), from S3 itself or from MinIO."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def event_name(self) -> str:
        name = self.raw.get("eventName")
        if not isinstance(name, str) or not name:
            raise EventError("record has no eventName")
        return name.removeprefix("s3:")  # MinIO: "s3:ObjectCreated:Put"

    @property
    def kind(self) -> Kind:
        name = self.event_name
        category, _, verb = name.partition(":")
        if category == "ObjectCreated" and verb in _CREATED:
            return "created"
        return "removed" if name in _REMOVED else "other"

    @property
    def bucket(self) -> Mapping[str, Any]:
        return _mapping(self.s3.get("bucket"), "s3.bucket")

    @property
    def object(self) -> Mapping[str, Any]:
        return _mapping(self.s3.get("object"), "s3.object")

    @property
    def s3(self) -> Mapping[str, Any]:
        return _mapping(self.raw.get("s3"), "record's 's3'")

    def to_event(self) -> ObjectEvent:
        obj = self.object
        return object_event(
            kind=self.kind,
            bucket=self.bucket.get("name"),
            raw_key=obj.get("key"),
            url_encoded=True,
            version_id=obj.get("versionId"),
            etag=obj.get("eTag") or obj.get("etag"),
            size=obj.get("size"),
            sequencer=obj.get("sequencer"),
            event_time=self.raw.get("eventTime"),
            event_name=self.event_name,
            content_type=obj.get("contentType"),  # MinIO sends it; S3 does not
        )


class EventBridgeEvent:
    """An Amazon EventBridge event from S3 ("Object Created", "Object Deleted", ...)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def detail_type(self) -> str:
        return str(self.raw.get("detail-type") or "")

    @property
    def detail(self) -> Mapping[str, Any]:
        return _mapping(self.raw.get("detail"), "EventBridge 'detail'")

    def to_event(self) -> ObjectEvent:
        if self.raw.get("source") != "aws.s3":
            raise EventError(f"EventBridge event from {self.raw.get('source')!r}, not aws.s3")
        detail = self.detail
        obj = _mapping(detail.get("object"), "detail.object")
        return object_event(
            kind=_EB_KINDS.get(self.detail_type, "other"),
            bucket=_mapping(detail.get("bucket"), "detail.bucket").get("name"),
            raw_key=obj.get("key"),
            url_encoded=False,  # EventBridge sends keys as they are
            version_id=obj.get("version-id"),
            etag=obj.get("etag"),
            size=obj.get("size"),
            sequencer=obj.get("sequencer"),
            event_time=self.raw.get("time"),
            event_name=self.detail_type,
        )
