"""The handler's one core: an invocation in, per-record actions out, tasks published.

Every entry point (the Lambda function, the MinIO webhook, the operators' `events parse`)
goes through ``plan``; one bad record is reported by itself and never fails the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from handlers.contract import FORGET_TASK, TAG_TASK, ObjectTask
from handlers.envelopes import Broken, Skip, is_sqs_event, iter_units
from handlers.events import EventError, ObjectEvent
from handlers.rules import (
    NO_EXCLUSIONS,
    NUL_KEY,
    OPAQUE_KEYS_DEFAULT,
    Exclusions,
    OwnerRule,
    skip_reason,
)

log = logging.getLogger("sightline.handler")

_TASK_OF = {"tag": TAG_TASK, "delete": FORGET_TASK}
_REFUSED = "key outside the owner pattern"
_FOREIGN = "bucket not in SIGHTLINE_ALLOWED_BUCKETS"


@dataclass(eq=False)
class Action:
    """What the handler does with one record: "tag", "delete", "ignore" or "error"."""

    action: str
    message_id: str | None = None
    event: ObjectEvent | None = None
    owner: str | None = None
    reason: str | None = None
    same_as: Action | None = None  # a duplicate shares the fate of the record it repeats

    @property
    def task_name(self) -> str | None:
        return _TASK_OF.get(self.action)

    def task(self) -> ObjectTask:
        e = self.event
        assert e is not None and self.owner is not None
        return ObjectTask(
            bucket=e.bucket,
            key=e.key,
            version_id=e.version_id,
            etag=e.etag,
            size=e.size,
            sequencer=e.sequencer,
            event_time=e.event_time,
            owner=self.owner,
        )

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {
            "action": self.action,
            "bucket": e.bucket if e else None,
            "key": e.key if e else None,
            "version_id": e.version_id if e else None,
            "size": e.size if e else None,
            "etag": e.etag if e else None,
            "sequencer": e.sequencer if e else None,
            "owner": self.owner,
            "reason": self.reason,
            "message_id": self.message_id,
        }


def plan(
    event: Mapping[str, Any],
    owners: OwnerRule,
    *,
    allowed_buckets: frozenset[str] | None = None,
    opaque_keys: bool = OPAQUE_KEYS_DEFAULT,
    exclude: Exclusions = NO_EXCLUSIONS,
) -> list[Action]:
    """Decide, record by record, what to do with an invocation's event.

    With ``allowed_buckets``, records for any other bucket are ignored with a reason;
    ``opaque_keys`` tags keys with no extension (SIGHTLINE_OPAQUE_KEYS); keys that
    ``exclude`` matches (SIGHTLINE_EXCLUDE) are ignored with the pattern that matched.
    """
    actions = [
        _plan_item(item, unit.message_id, owners, allowed_buckets, opaque_keys, exclude)
        for unit in iter_units(event)
        for item in unit.items
    ]
    _settle_batch(actions)
    return actions


def _plan_item(
    item: Any,
    message_id: str | None,
    owners: OwnerRule,
    buckets: frozenset[str] | None,
    opaque_keys: bool,
    exclude: Exclusions = NO_EXCLUSIONS,
) -> Action:
    if isinstance(item, Skip):
        return Action("ignore", message_id, reason=item.reason)
    if isinstance(item, Broken):
        return Action("error", message_id, reason=item.reason)
    try:
        ev = item.to_event()
    except EventError as exc:
        return Action("error", message_id, reason=str(exc))
    if buckets is not None and ev.bucket not in buckets:
        return Action("ignore", message_id, ev, reason=f"{_FOREIGN} ({ev.bucket!r})")
    reason = skip_reason(ev, exclude, opaque_keys=opaque_keys)
    if reason:
        return Action("ignore", message_id, ev, reason=reason)
    owner = owners.owner_of(ev.key)
    if owner is None:
        return Action("ignore", message_id, ev, reason=f"{_REFUSED} {owners.pattern!r}")
    return Action("tag" if ev.created else "delete", message_id, ev, owner=owner)


def _settle_batch(actions: list[Action]) -> None:
    """One task per record, and only the newest record per key (by S3's sequencer rule).

    Ignored records count too: a newer empty or non-image write supersedes an older photo.
    Normalised sequencers are padded to one width, so string order is S3's order.
    """
    first: dict[tuple[Any, ...], Action] = {}
    newest: dict[tuple[str, str], str] = {}
    for a in actions:
        if a.event is None or a.action == "error":
            continue
        ident = a.event.identity()
        if ident in first:
            if a.task_name:
                a.action, a.same_as = "ignore", first[ident]
                a.reason = "duplicate of an earlier record in this batch"
            continue
        first[ident] = a
        seq = a.event.sequencer
        # A delete naming a version is a hint the worker reconciles with HEAD: it may remove
        # a noncurrent version while the Put before it is the current one, so it never
        # supersedes anything here.
        if not a.event.created and a.event.version_id not in (None, "null"):
            continue
        if seq and seq > newest.get((a.event.bucket, a.event.key), ""):
            newest[(a.event.bucket, a.event.key)] = seq
    for a in actions:
        if a.task_name and a.event and a.event.sequencer:
            top = newest.get((a.event.bucket, a.event.key), "")
            if a.event.sequencer < top:
                a.action = "ignore"
                a.reason = f"superseded by a newer event for this key in the batch ({top})"


class Publisher(Protocol):
    def publish(self, tasks: list[tuple[str, ObjectTask]]) -> list[Exception | None]:
        """Send tasks by name; per task, None or the error that stopped it."""
        ...


@dataclass
class BatchResult:
    actions: list[Action] = field(default_factory=list)
    failed_message_ids: list[str] = field(default_factory=list)
    from_sqs: bool = False

    @property
    def errors(self) -> list[Action]:
        return [a for a in self.actions if a.action == "error"]

    @property
    def unreported(self) -> list[Action]:
        """Errors from a message with no id: a partial batch response cannot name them, so
        reporting the rest would delete them as done."""
        return [a for a in self.errors if not a.message_id]

    def response(self) -> dict[str, Any]:
        """The Lambda SQS partial batch response: only the failed messages are retried."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_message_ids]}


def handle(
    event: Mapping[str, Any],
    owners: OwnerRule,
    publisher: Publisher,
    *,
    allowed_buckets: frozenset[str] | None = None,
    opaque_keys: bool = OPAQUE_KEYS_DEFAULT,
    exclude: Exclusions = NO_EXCLUSIONS,
) -> BatchResult:
    """Plan the event, publish its tasks in one go, and report failures per message."""
    actions = plan(
        event, owners, allowed_buckets=allowed_buckets, opaque_keys=opaque_keys, exclude=exclude
    )
    work = [a for a in actions if a.task_name]
    if work:
        errors = publisher.publish([(a.task_name, a.task()) for a in work])  # type: ignore[misc]
        for a, err in zip(work, errors, strict=True):
            if err is not None:
                a.action, a.reason = "error", f"publish failed: {type(err).__name__}: {err}"
    failed: dict[str, None] = {}  # ordered set
    for a in actions:
        if a.same_as is not None and a.same_as.action == "error":
            a.action, a.reason = "error", a.same_as.reason
        if a.action == "error":
            log.warning("record failed: %s (message %s)", a.reason, a.message_id)
            if a.message_id:
                failed[a.message_id] = None
        elif (
            a.action == "ignore"
            and a.event
            and (a.reason or "").startswith((_REFUSED, _FOREIGN, NUL_KEY))
        ):
            log.warning("refused %s/%r: %s", a.event.bucket, a.event.key, a.reason)
        elif a.action == "ignore":
            log.info("ignored: %s", a.reason)
    return BatchResult(actions, list(failed), from_sqs=is_sqs_event(event))
