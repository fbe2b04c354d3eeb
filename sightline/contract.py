"""The task contract: the only thing handlers and workers share.

Tasks carry object identities, never image bytes or rows. Light on purpose: the handler
imports it and must start in milliseconds.
"""

from __future__ import annotations

import re
from typing import TypedDict

TAG_TASK = "sightline.tag"
FORGET_TASK = "sightline.forget"
TAG_QUEUE = "tag"
MAINTENANCE_QUEUE = "maintenance"
QUEUE_OF = {TAG_TASK: TAG_QUEUE, FORGET_TASK: MAINTENANCE_QUEUE}

_SEQ_WIDTH = 64
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


class _ObjectIdentity(TypedDict):
    bucket: str
    key: str  # decoded: the identity everywhere downstream
    version_id: str | None
    etag: str | None
    size: int | None
    sequencer: str | None  # normalised, see normalize_sequencer
    event_time: str | None  # ISO 8601
    owner: str


class ObjectTask(_ObjectIdentity, total=False):
    """The keyword arguments of both tasks (JSON only).

    Optional, added by library jobs (backfills); workers that predate them ignore both.
    """

    job_id: int  # the jobs row this task is counted against
    force: bool  # re-tag even when the photo is tagged, unchanged and on the current model


def normalize_sequencer(raw: str | None) -> str | None:
    """S3 sequencers compare as hex strings after right-padding the shorter with zeros.

    Padding every sequencer to one width makes plain string comparison (in Python and in
    Postgres) agree with that rule. Anything that is not hex is no sequencer at all.
    """
    if not raw or not _HEX.match(raw) or len(raw) > _SEQ_WIDTH:
        return None
    return raw.upper().ljust(_SEQ_WIDTH, "0")
