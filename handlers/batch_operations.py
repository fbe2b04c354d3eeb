"""S3 Batch Operations as a source of tag tasks: its Lambda invocation in, one result code
per task out, so the job's completion report says what happened to each object.

Invocation schema 1.0 names the bucket by ARN (``s3BucketArn``), 2.0 by name (``s3Bucket``)
and adds ``job.userArguments``; both URL-encode ``s3Key`` (AWS's own examples decode it with
``unquote_plus``). Result codes: ``Succeeded`` (published, or nothing to do: not an image,
excluded, outside the owner pattern), ``TemporaryFailure`` (the broker refused it: Batch
Operations retries) and ``PermanentFailure`` (a task that names no object).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.contract import TAG_TASK
from handlers.core import Action, Publisher
from handlers.events import EventError, object_event
from handlers.rules import NO_EXCLUSIONS, OPAQUE_KEYS_DEFAULT, Exclusions, OwnerRule, skip_reason

SCHEMAS = ("1.0", "2.0")


def is_batch_operations(event: Mapping[str, Any]) -> bool:
    """An S3 Batch Operations invocation (it has a schema version, a job and tasks)."""
    return "invocationSchemaVersion" in event and "tasks" in event and "job" in event


@dataclass
class TaskResult:
    task_id: str
    code: str  # Succeeded | TemporaryFailure | PermanentFailure
    message: str

    def to_json(self) -> dict[str, str]:
        return {"taskId": self.task_id, "resultCode": self.code, "resultString": self.message}


def _bucket(task: Mapping[str, Any]) -> Any:
    if task.get("s3Bucket"):
        return task["s3Bucket"]
    arn = task.get("s3BucketArn")
    return arn.rsplit(":", 1)[-1] if isinstance(arn, str) else None  # arn:aws:s3:::name


def handle(
    event: Mapping[str, Any],
    owners: OwnerRule,
    publisher: Publisher,
    *,
    allowed_buckets: frozenset[str] | None = None,
    exclude: Exclusions = NO_EXCLUSIONS,
    opaque_keys: bool = OPAQUE_KEYS_DEFAULT,
) -> dict[str, Any]:
    """The Batch Operations response for one invocation; never raises for one bad task.

    Raises ValueError only for an invocation of an unknown schema version.
    """
    schema = str(event.get("invocationSchemaVersion"))
    if schema not in SCHEMAS:
        raise ValueError(f"S3 Batch Operations schema {schema!r} is not supported (1.0, 2.0)")
    raw_tasks = event.get("tasks")
    results: list[TaskResult] = []
    work: list[tuple[TaskResult, Action]] = []
    for task in raw_tasks if isinstance(raw_tasks, list) else []:
        if not isinstance(task, Mapping):  # answered, so results pair with tasks
            results.append(TaskResult("", "PermanentFailure", "task is not a JSON object"))
            continue
        result = TaskResult(str(task.get("taskId") or ""), "Succeeded", "")
        results.append(result)
        try:
            ev = object_event(
                kind="created",
                bucket=_bucket(task),
                raw_key=task.get("s3Key"),
                url_encoded=True,
                version_id=task.get("s3VersionId"),
                event_name="BatchOperations",
            )
        except EventError as exc:
            result.code, result.message = "PermanentFailure", str(exc)
            continue
        if allowed_buckets is not None and ev.bucket not in allowed_buckets:
            result.message = "ignored: bucket not in SIGHTLINE_ALLOWED_BUCKETS"
            continue
        reason = skip_reason(ev, exclude, opaque_keys=opaque_keys)
        owner = owners.owner_of(ev.key)
        if reason or owner is None:
            result.message = f"ignored: {reason or 'key outside the owner pattern'}"
            continue
        work.append((result, Action("tag", event=ev, owner=owner)))
    if work:
        errors = publisher.publish([(TAG_TASK, a.task()) for _, a in work])
        for (result, _), err in zip(work, errors, strict=True):
            if err is None:
                result.message = "published"
            else:
                result.code = "TemporaryFailure"
                result.message = f"publish failed: {type(err).__name__}: {err}"
    return {
        "invocationSchemaVersion": schema,
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": event.get("invocationId"),
        "results": [r.to_json() for r in results],
    }
