"""The task contract: the only thing handlers and workers share.

It lives with the handlers, which produce the messages; workers import it from here.

Tasks carry object identities, never image bytes or rows. Light on purpose: the handler
imports it and must start in milliseconds.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

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
QUEUES = (TAG_QUEUE, MAINTENANCE_QUEUE)  # every queue a worker consumes

_SEQ_WIDTH = 64
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
# RFC 3339 as S3, MinIO and EventBridge write event times (upper-case T and Z: the
# workers' own parsing takes no other); a date alone, minutes without seconds and an offset
# without its colon pass too. Python's fromisoformat takes more (week
# dates, "08Z", ",5" fractions, offsets to 23:59) than Postgres' timestamptz, and a time the
# database refuses failed the whole batch's write.
_EVENT_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_FRACTION = re.compile(r"\.\d+")
_MAX_OFFSET = timedelta(hours=16)  # Postgres takes UTC offsets up to 15:59:59


class _ObjectIdentity(TypedDict):
    bucket: str
    key: str  # decoded: the identity everywhere downstream
    version_id: str | None
    etag: str | None
    size: int | None
    sequencer: str | None  # normalised, see normalize_sequencer
    event_time: str | None  # RFC 3339, see event_time_problem
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


# kombu transport options that are numbers (seconds or counts) on Redis, SQS and RabbitMQ
_NUMERIC_OPTIONS = frozenset({
    "visibility_timeout", "polling_interval", "wait_time_seconds", "max_connections",
    "socket_timeout", "socket_connect_timeout", "health_check_interval", "max_retries",
    "interval_start", "interval_step", "interval_max",
})  # fmt: skip


def parse_broker_options(raw: str | None) -> dict[str, Any]:
    """SIGHTLINE_BROKER_OPTIONS: a JSON object of kombu transport options (unset: ``{}``).

    Publisher and consumer read the same variable, so both sides parse it here.
    Raises ValueError (one line) when it is not a JSON object.
    """
    try:
        options = json.loads(raw or "{}")
    except ValueError:
        raise ValueError(f"SIGHTLINE_BROKER_OPTIONS is not JSON: {raw!r}") from None
    if not isinstance(options, dict):
        raise ValueError("SIGHTLINE_BROKER_OPTIONS must be a JSON object")
    for name in _NUMERIC_OPTIONS & options.keys():
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
            # kombu takes it as given: "abc" crashed the worker after its banner
            raise ValueError(
                f"SIGHTLINE_BROKER_OPTIONS {raw!r}: {name} must be a number of 0 or more"
            )
    return options


def event_time_problem(value: str) -> str | None:
    """Why an event time cannot be stored, in a few words; None when it can.

    Accepted: RFC 3339 (``2024-05-01T08:15:00.123Z``, ``+05:30`` offsets), also a date alone
    or minutes without seconds, each a real date and time both here and in Postgres.
    """
    if not _EVENT_TIME.fullmatch(value):
        return "not an RFC 3339 time"
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        return f"not a real date and time ({exc})"
    offset = when.utcoffset()
    if offset is not None and abs(offset) >= _MAX_OFFSET:
        return "out of range (a UTC offset past 15:59)"
    try:  # stored as UTC: 9999-12-31T23:59-15:00 is year 10,000, which no reader can take
        utc = (when if offset is not None else when.replace(tzinfo=UTC)).astimezone(UTC)
        fraction = _FRACTION.search(value, 10)
        if fraction and len(fraction.group()) > 7:
            # Python cuts a fraction to microseconds, Postgres rounds it: .9999999 can be
            # the next microsecond, and at the end of 9999 the next year
            utc + timedelta(microseconds=1)
    except OverflowError:
        return "out of range (years 1 to 9999 in UTC)"
    return None
