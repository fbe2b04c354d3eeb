"""Time taken from EXIF: DateTimeOriginal, then DateTimeDigitized, then DateTime.

Each date is paired with its own offset tag (OffsetTimeOriginal, OffsetTimeDigitized,
OffsetTime; EXIF 2.31). A date with an offset is aware; without one it is the camera's wall
clock (naive), as before. Placeholders are skipped, not taken: all zeros, blanks, and dates
that cannot exist (month 13, 30 February, a year before 1826, the first photograph, or a
year after next: 9999:12:31 is a camera's "no date", and a photo dated decades ahead would
head every album sorted newest first).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

# (date tag, its IFD, its offset tag): IFD "exif" is the Exif sub-IFD, "0" is IFD0.
_ORDER = (
    (0x9003, "exif", 0x9011),  # DateTimeOriginal, OffsetTimeOriginal
    (0x9004, "exif", 0x9012),  # DateTimeDigitized, OffsetTimeDigitized
    (0x0132, "0", 0x9010),  # DateTime, OffsetTime (the offset lives in the Exif IFD)
)
FIRST_YEAR = 1826
_EXIF_DATE = re.compile(
    r"^\s*(\d{4})[:\-/](\d{1,2})[:\-/](\d{1,2})[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?"
)
_OFFSET = re.compile(r"^\s*([+-])(\d{1,2}):?(\d{2})\s*$")
MAX_OFFSET = timedelta(hours=14)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        value = value[0]
    if not isinstance(value, str):
        return None
    return value.replace("\x00", " ").strip()


def plausible_year(year: int) -> bool:
    """A capture year: 1826 (the first photograph) to next year (a clock set a little ahead)."""
    return FIRST_YEAR <= year <= datetime.now().year + 1


def parse_exif_date(value: Any) -> datetime | None:
    """ "YYYY:MM:DD HH:MM:SS" (also with - or / and a T) as a naive datetime, or None for a
    placeholder or an impossible date."""
    text = _text(value)
    if not text:
        return None
    m = _EXIF_DATE.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    if not plausible_year(y):
        return None
    try:
        return datetime(y, mo, d, h, mi, s)
    except ValueError:
        return None


def parse_offset(value: Any) -> timezone | None:
    """ "+09:00" / "-05:30" as a timezone, or None (blank, placeholder or beyond ±14 h)."""
    text = _text(value)
    if not text:
        return None
    m = _OFFSET.match(text)
    if not m:
        return None
    sign, hours, minutes = m.groups()
    if int(minutes) >= 60:
        return None
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > MAX_OFFSET:
        return None
    return timezone(-delta if sign == "-" else delta)


def taken_from_exif(ifd0: Mapping[int, Any], exif_ifd: Mapping[int, Any]) -> datetime | None:
    """The first real date in the fallback order, with its own offset where present."""
    ifds = {"0": ifd0, "exif": exif_ifd}
    other = {"0": exif_ifd, "exif": ifd0}
    for tag, where, offset_tag in _ORDER:
        # in its own IFD first; some writers put it in the other one
        when = parse_exif_date(ifds[where].get(tag)) or parse_exif_date(other[where].get(tag))
        if when is None:
            continue
        tz = parse_offset(exif_ifd.get(offset_tag)) or parse_offset(ifd0.get(offset_tag))
        return when.replace(tzinfo=tz) if tz else when
    return None
