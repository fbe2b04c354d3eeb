"""Erasure and tombstone purges: an owner's rows, or old delete tombstones, in short batches.

Each batch is its own transaction (locks held for one batch only) and deletes photo rows;
their scene, album and landmark-match rows and owners' corrections (``photo_corrections``) go
with them (ON DELETE CASCADE).

Tombstones and the sequencer guard: a photo's row keeps the sequencer and event time of the
last event applied to its key, and a delete leaves the row as a tombstone (status
``deleted``; ``gone`` when the object was missing at fetch) so a late, older Put is refused
instead of resurrecting the photo. Purging a tombstone removes that guard, so only
tombstones older than the event redelivery window are purged: every event that can still be
delivered is younger than the window, so it finds its tombstone. The window is
``SIGHTLINE_MAX_EVENT_AGE`` (default 15 days: SQS keeps a message at most 14 days, counted
from its first enqueue even after a move to a dead-letter queue, plus a day of margin); a
shorter ``older_than`` is refused. A broker or queue that can hold events longer (a Redis
broker never expires tasks; MinIO's ``queue_dir`` keeps events while the webhook is down)
needs a longer window. A tombstone's age is the later of its write time and its event time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from workers.migrate import hold_schema

DEFAULT_MAX_EVENT_AGE = timedelta(days=15)
TOMBSTONES = ("deleted", "gone")


class PurgeRefused(ValueError):
    """A purge that would break the sequencer guard, or bad arguments; one line."""


@dataclass
class PurgeCounts:
    photos: int = 0
    scenes: int = 0
    albums: int = 0
    matches: int = 0
    corrections: int = 0
    batches: int = 0
    dry_run: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "scenes": self.scenes,
            "albums": self.albums,
            "matches": self.matches,
            "corrections": self.corrections,
            "batches": self.batches,
            "dry_run": self.dry_run,
            **self.extra,
        }


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '90m', '3600s' (or a bare number of days) as a timedelta; ValueError."""
    t = text.strip().lower()
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "w": "weeks"}
    unit = units.get(t[-1:])
    number = t[:-1] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not an age: {text!r} (use e.g. 30d, 12h, 90m)") from None
    if value < 0:
        raise ValueError(f"an age cannot be negative: {text!r}")
    return timedelta(**{unit or "days": value})


def _dependents(cur: Any, ids: list[int]) -> tuple[int, int, int, int]:
    """Rows that go with these photos: scenes, albums, matches, corrections."""
    out = []
    for table in ("photo_scenes", "photo_albums", "landmark_matches", "photo_corrections"):
        cur.execute(f"SELECT count(*) FROM {table} WHERE photo_id = ANY(%s)", (ids,))
        out.append(cur.fetchone()[0])
    return out[0], out[1], out[2], out[3]


def _purge_batches(
    conn: Any, where: str, params: tuple[Any, ...], batch: int, dry_run: bool
) -> PurgeCounts:
    """Delete photos matching ``where`` (with their dependents) ``batch`` rows at a time."""
    if batch < 1:
        raise PurgeRefused("batch size must be at least 1")
    counts = PurgeCounts(dry_run=dry_run)
    last_id = 0
    while True:
        with conn, conn.cursor() as cur:
            hold_schema(cur)  # first: an upgrade in progress finishes before this batch
            cur.execute(
                f"SELECT id FROM photos WHERE ({where}) AND id > %s ORDER BY id LIMIT %s",
                (*params, last_id, batch),
            )
            ids = [r[0] for r in cur.fetchall()]
            if not ids:
                break
            scenes, albums, matches, n_corr = _dependents(cur, ids)
            if not dry_run:
                # Re-check the condition: a newer event may have revived a row since the select.
                cur.execute(f"DELETE FROM photos WHERE id = ANY(%s) AND ({where})", (ids, *params))
                counts.photos += cur.rowcount
            else:
                counts.photos += len(ids)
            counts.scenes += scenes
            counts.albums += albums
            counts.matches += matches
            counts.corrections += n_corr
            counts.batches += 1
            last_id = ids[-1]
    return counts


def purge_owner(conn: Any, owner: str, *, batch: int = 1000, dry_run: bool = False) -> PurgeCounts:
    """Remove every row of ``owner``: photos (any status), their tags and matches, and their
    corrections. Idempotent: run it again to catch a photo a straggling event wrote since."""
    if not owner:
        raise PurgeRefused("an owner is required")
    counts = _purge_batches(conn, "owner = %s", (owner,), batch, dry_run)
    counts.extra["owner"] = owner
    return counts


def purge_tombstones(
    conn: Any,
    older_than: timedelta,
    *,
    max_event_age: timedelta = DEFAULT_MAX_EVENT_AGE,
    batch: int = 1000,
    dry_run: bool = False,
) -> PurgeCounts:
    """Remove tombstones (status deleted or gone) older than ``older_than``.

    Raises PurgeRefused when ``older_than`` is shorter than ``max_event_age``, the event
    redelivery window: a younger tombstone may still be needed to refuse a late, older Put.
    """
    if older_than < max_event_age:
        raise PurgeRefused(
            f"--older-than {_days(older_than)} is shorter than the event redelivery window "
            f"({_days(max_event_age)}, SIGHTLINE_MAX_EVENT_AGE): a late Put older than a purged "
            "delete could resurrect its photo"
        )
    where = (
        "status = ANY(%s) AND updated_at < now() - %s "
        "AND coalesce(event_time, updated_at) < now() - %s"
    )
    counts = _purge_batches(conn, where, (list(TOMBSTONES), older_than, older_than), batch, dry_run)
    counts.extra["older_than_s"] = older_than.total_seconds()
    return counts


def _days(age: timedelta) -> str:
    return f"{age.total_seconds() / 86400:g} d"
