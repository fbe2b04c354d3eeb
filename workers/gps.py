"""GPS position from an EXIF GPS IFD, as cameras and phones really write it.

The rules, each pinned by a test in tests/test_gps.py:

1. Both latitude (tag 2) and longitude (tag 4) are needed; either missing is no fix.
2. GPSStatus (tag 9) "V" (measurement void) is no fix.
3. A coordinate is 1, 2 or 3 components: degrees; degrees and minutes; or degrees, minutes
   and seconds. One component is decimal degrees, whether stored as one rational or a float
   (some writers store the whole DMS triple as one rational). More than 3 is no fix.
4. A component stored with a zero denominator is undefined: undefined minutes or seconds
   count as 0 (``0/0`` is how writers say "not measured"), undefined degrees mean no fix.
5. Minutes and seconds lie in [0, 60] (60 tolerates writers that round 59.9995 up);
   degrees must be at least 0 when given with minutes or seconds. Outside that: no fix.
6. The reference (tags 1 and 3) is read case-insensitively, NULs and blanks ignored:
   "S" and "W" make the coordinate negative. A missing or unreadable reference keeps the
   value's own sign (decimal-degree writers store signed values and no reference). A
   reference of the other axis ("E" for a latitude) is no fix.
7. |latitude| <= 90 and |longitude| <= 180, both finite; otherwise no fix.
8. Exactly (0, 0) is no fix: phones write it when they have none, and nobody photographs
   that spot in the Gulf of Guinea often enough to outweigh the false positives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_LAT_REF, _LAT, _LON_REF, _LON, _STATUS = 1, 2, 3, 4, 9


class _Undefined(ValueError):
    """A component stored with a zero denominator."""


def _number(value: Any) -> float:
    """A component as a float; _Undefined for n/0, ValueError for anything not a number."""
    num, den = getattr(value, "numerator", None), getattr(value, "denominator", None)
    if num is not None and den is not None and not isinstance(value, int | float):
        if den == 0:
            raise _Undefined("zero denominator")
        return float(num) / float(den)
    if isinstance(value, tuple) and len(value) == 2:  # a raw (num, den) pair
        if value[1] == 0:
            raise _Undefined("zero denominator")
        return float(value[0]) / float(value[1])
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    x = float(value)
    if math.isnan(x):  # Pillow's IFDRational(0, 0) reads as NaN
        raise _Undefined("NaN")
    return x


def _components(raw: Any) -> list[Any]:
    if isinstance(raw, list | tuple):
        return list(raw)
    return [raw]


def coordinate(raw: Any, ref: Any, axis: str) -> float | None:
    """One coordinate in signed decimal degrees, or None (rules 3-7).

    ``axis`` is "lat" or "lon"; ``raw`` is the tag value (tuple of rationals, one rational
    or a float), ``ref`` the reference tag value or None.
    """
    try:
        parts = _components(raw)
        if not 1 <= len(parts) <= 3:
            return None
        deg = _number(parts[0])
        rest = []
        for p in parts[1:]:
            try:
                rest.append(_number(p))
            except _Undefined:
                rest.append(0.0)
    except (ValueError, TypeError, OverflowError, ZeroDivisionError):
        return None
    if any(not math.isfinite(x) or not 0.0 <= x <= 60.0 for x in rest):
        return None
    if rest and deg < 0:
        return None
    value = deg + sum(x / 60.0**n for n, x in enumerate(rest, start=1))
    letter = _ref_letter(ref)
    own = {"lat": "NS", "lon": "EW"}[axis]
    other = {"lat": "EW", "lon": "NS"}[axis]
    if letter and letter in other:
        return None
    if letter and letter in own:
        value = -abs(value) if letter in "SW" else abs(value)
    limit = 90.0 if axis == "lat" else 180.0
    if not math.isfinite(value) or abs(value) > limit:
        return None
    return value


def _ref_letter(ref: Any) -> str:
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    if not isinstance(ref, str):
        return ""
    text = ref.replace("\x00", "").strip().upper()
    return text[:1] if text[:1] in {"N", "S", "E", "W"} else ""


def gps_from_ifd(ifd: Mapping[int, Any]) -> tuple[float, float] | None:
    """(lat, lon) in degrees from a GPS IFD keyed by tag number, or None (rules 1-8)."""
    if _LAT not in ifd or _LON not in ifd:
        return None
    status = ifd.get(_STATUS)
    if isinstance(status, bytes):
        status = status.decode("ascii", "replace")
    if isinstance(status, str) and status.replace("\x00", "").strip().upper() == "V":
        return None
    lat = coordinate(ifd[_LAT], ifd.get(_LAT_REF), "lat")
    lon = coordinate(ifd[_LON], ifd.get(_LON_REF), "lon")
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        return None
    return lat, lon
