"""Before a delete destroys data, reconcile with the object's current state (HEAD).

An event is a hint, never the truth about what exists (S3 repeats and reorders events, and
in a versioned bucket a delete may name a version that is not the live one). The rules:

- No current version (the key is gone, or a delete marker is on top): the photo is deleted,
  whatever version the row holds, since nothing of the key is live.
- A current version exists and the row already holds it, tagged: the delete named another
  version (a noncurrent one expiring, an old version removed): nothing changes.
- A current version exists and the row does not hold it (the current version was deleted
  and an older one became current again, a delete marker was removed, or the row was
  deleted): the current version is tagged, ordered by the delete event's sequencer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from workers.errors import RequestRefused, TransientError, request_refusal

_ABSENT = {"404", "NoSuchKey", "NotFound", "NoSuchVersion", "MethodNotAllowed", "405"}


@dataclass(frozen=True)
class Current:
    """The object's current version as HEAD reports it."""

    version_id: str | None  # None in a bucket that never had versioning ("null" as None)
    etag: str | None  # without quotes, as events carry it
    size: int | None


@dataclass(frozen=True)
class Stored:
    status: str
    version_id: str | None
    etag: str | None


def head_current(client: Any, bucket: str, key: str) -> Current | None:
    """HEAD without a version id: the current version, or None when none exists (S3 answers
    404, or 405 with a delete marker on top). RequestRefused when the client will not send
    the request (a bucket name S3 cannot have); TransientError for anything else."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _ABSENT:
            return None
        raise TransientError(f"S3 HEAD {code}: {exc}") from exc
    except ParamValidationError as exc:  # a BotoCoreError, but final
        raise RequestRefused(f"invalid S3 request: {request_refusal(exc)}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"S3 unreachable: {exc}") from exc
    version = head.get("VersionId")
    return Current(
        None if version in (None, "", "null") else str(version),
        _etag(head.get("ETag")),
        int(head["ContentLength"]) if head.get("ContentLength") is not None else None,
    )


def _etag(value: Any) -> str | None:
    return str(value).strip('"') or None if value else None


def stored_state(cur: Any, bucket: str, key: str) -> Stored | None:
    cur.execute(
        "SELECT status, version_id, etag FROM photos WHERE bucket = %s AND key = %s",
        (bucket, key),
    )
    row = cur.fetchone()
    return Stored(*row) if row else None


def holds(stored: Stored | None, current: Current) -> bool:
    """Whether the row is the current version, tagged (version id, else ETag, decides)."""
    if stored is None or stored.status != "tagged":
        return False
    if current.version_id is not None or stored.version_id not in (None, "null"):
        return stored.version_id == current.version_id
    return _etag(stored.etag) == current.etag


def retarget(task: Mapping[str, Any], current: Current) -> dict[str, Any]:
    """A tag task for the current version, ordered by the delete event that revealed it."""
    return {
        **task,
        "version_id": current.version_id,
        "etag": current.etag,
        "size": current.size,
    }
