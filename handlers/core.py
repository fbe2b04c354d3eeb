"""The handler's one core: envelopes in, per-record actions out, tasks published.

Every entry point (Lambda, the operators' `events parse`) goes through ``plan``; one bad
record is reported by itself and never fails the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from handlers.events import EventError, ObjectEvent, iter_envelopes, iter_s3_records
from handlers.rules import OwnerRule, skip_reason
from sightline.contract import FORGET_TASK, TAG_TASK, ObjectTask

log = logging.getLogger("sightline.handler")


@dataclass
class Action:
    """What the handler does with one record."""

    action: str  # "tag" | "delete" | "ignore" | "error"
    message_id: str | None = None
    event: ObjectEvent | None = None
    owner: str | None = None
    reason: str | None = None

    @property
    def task_name(self) -> str | None:
        return {"tag": TAG_TASK, "delete": FORGET_TASK}.get(self.action)

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


def plan(event: Mapping[str, Any], owners: OwnerRule) -> list[Action]:
    """Decide, record by record, what to do with an invocation's event."""
    actions: list[Action] = []
    for env in iter_envelopes(event):
        try:
            records = list(iter_s3_records(env.body))
        except EventError as exc:
            actions.append(Action("error", env.message_id, reason=str(exc)))
            continue
        for record in records:
            actions.append(_plan_record(record, env.message_id, owners))
    return actions


def _plan_record(record: Any, message_id: str | None, owners: OwnerRule) -> Action:
    try:
        ev = record.to_event()
    except (EventError, KeyError, TypeError, ValueError) as exc:
        return Action("error", message_id, reason=str(exc) or type(exc).__name__)
    reason = skip_reason(ev)
    if reason:
        return Action("ignore", message_id, ev, reason=reason)
    owner = owners.owner_of(ev.key)
    if owner is None:
        return Action("ignore", message_id, ev, reason="key outside the owner pattern")
    return Action("tag" if ev.created else "delete", message_id, ev, owner=owner)


class Publisher(Protocol):
    def publish(self, tasks: list[tuple[str, ObjectTask]]) -> list[Exception | None]:
        """Send tasks by name; per task, None or the error that stopped it."""


@dataclass
class BatchResult:
    actions: list[Action] = field(default_factory=list)
    failed_message_ids: list[str] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        """The Lambda SQS partial batch response: only the failed messages are retried."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_message_ids]}


def handle(event: Mapping[str, Any], owners: OwnerRule, publisher: Publisher) -> BatchResult:
    """Plan the event, publish its tasks, and report failures per message."""
    actions = plan(event, owners)
    work = [a for a in actions if a.task_name]
    errors = publisher.publish([(a.task_name, a.task()) for a in work]) if work else []  # type: ignore[misc]
    for a, err in zip(work, errors):
        if err is not None:
            a.action, a.reason = "error", f"publish failed: {err}"
    failed: list[str] = []
    for a in actions:
        if a.action == "error":
            log.warning("record failed: %s (message %s)", a.reason, a.message_id)
            if a.message_id and a.message_id not in failed:
                failed.append(a.message_id)
        elif a.action == "ignore":
            log.info("record ignored: %s", a.reason)
    return BatchResult(actions, failed)
