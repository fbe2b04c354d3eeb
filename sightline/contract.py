"""The task contract: the only thing handlers and workers share.

Tasks carry object identities, never image bytes or rows. Light on purpose: the handler
imports it and must start in milliseconds.
"""

from __future__ import annotations

import re
from typing import TypedDict

TAG_TASK = "sightline.tag"
FORGET_TASK = "sightline.forget"
# One chunk of a fleet re-tag / scene re-file: kwargs {"job_id": int, "chunk": int}.
RETAG_CHUNK_TASK = "sightline.retag_chunk"
TAG_QUEUE = "tag"
MAINTENANCE_QUEUE = "maintenance"
QUEUE_OF = {
    TAG_TASK: TAG_QUEUE,
    FORGET_TASK: MAINTENANCE_QUEUE,
    RETAG_CHUNK_TASK: MAINTENANCE_QUEUE,
}

_SEQ_WIDTH = 64
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


class ObjectTask(TypedDict):
    """The keyword arguments of both tasks (JSON only)."""

    bucket: str
    key: str  # decoded: the identity everywhere downstream
    version_id: str | None
    etag: str | None
    size: int | None
    sequencer: str | None  # normalised, see normalize_sequencer
    event_time: str | None  # ISO 8601
    owner: str


def normalize_sequencer(raw: str | None) -> str | None:
    """S3 sequencers compare as hex strings after right-padding the shorter with zeros.

    Padding every sequencer to one width makes plain string comparison (in Python and in
    Postgres) agree with that rule. Anything that is not hex is no sequencer at all.
    """
    if not raw or not _HEX.match(raw) or len(raw) > _SEQ_WIDTH:
        return None
    return raw.upper().ljust(_SEQ_WIDTH, "0")
