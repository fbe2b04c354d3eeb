"""GPS, dates and camera from an XMP packet: the fallback for files that carry only XMP.

Read with regular expressions over the packet, both as attributes (``exif:GPSLatitude="…"``)
and as elements (``<exif:GPSLatitude>…</…>``), never with an XML parser: a packet is
untrusted input, and these few simple properties need none of XML's entity machinery.
Sources: XMP Specification Part 2 (Adobe, 2016), the ``exif:``, ``tiff:``, ``xmp:`` and
``photoshop:`` namespaces; GPS coordinates are "DDD,MM,SSk" or "DDD,MM.mmk" (k = N/S/E/W).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from workers.gps import coordinate
from workers.taken import plausible_year

MAX_PACKET = 1 << 20  # bytes of XMP read; a bigger packet is cut here
# Date properties in the same fallback order as EXIF: original, digitized, modified.
_DATE_PROPS = ("DateTimeOriginal", "DateCreated", "CreateDate", "DateTimeDigitized", "ModifyDate")
_ISO = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?)?\s*$"
)
_NUM = r"(\d+(?:\.\d+)?)"
# "DDD,MM,SSk", "DDD,MM.mmk", or decimal degrees; signed and without k from some writers
_XMP_COORD = re.compile(rf"^\s*(-?\d+(?:\.\d+)?)(?:,{_NUM})?(?:,{_NUM})?\s*([NSEWnsew])?\s*$")


@dataclass(frozen=True)
class XmpFacts:
    gps: tuple[float, float] | None = None
    taken_at: datetime | None = None
    make: str | None = None
    model: str | None = None


def _prop(packet: str, name: str) -> str | None:
    """The first value of property ``name`` (any namespace prefix), attribute or element."""
    m = re.search(rf'[\w.-]+:{name}\s*=\s*"([^"]*)"', packet) or re.search(
        rf"<[\w.-]+:{name}\b[^>]*>([^<]*)</", packet
    )
    if m:
        return m.group(1).strip() or None
    # rdf:Seq/rdf:Alt values (tiff:Model is sometimes written so): first rdf:li inside
    m = re.search(rf"<[\w.-]+:{name}\b[^>]*>.*?<rdf:li[^>]*>([^<]*)</rdf:li>", packet, re.S)
    return m.group(1).strip() or None if m else None


def _coord(text: str | None, axis: str) -> float | None:
    if not text:
        return None
    m = _XMP_COORD.match(text)
    if not m:
        return None
    parts = [float(g) for g in m.groups()[:3] if g is not None]
    return coordinate(tuple(parts), m.group(4) or None, axis)


def parse_xmp_date(text: str | None) -> datetime | None:
    """ISO 8601 as XMP writes it: aware with its offset, naive without, None when absent,
    a placeholder or impossible."""
    if not text:
        return None
    m = _ISO.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups()[:6])
    if not plausible_year(y):
        return None
    try:
        when = datetime(y, mo, d, h, mi, s)
    except ValueError:
        return None
    zone = m.group(7)
    if zone == "Z":
        return when.replace(tzinfo=UTC)
    if zone:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if delta <= timedelta(hours=14) and int(digits[2:]) < 60:
            return when.replace(tzinfo=timezone(sign * delta))
    return when


def read_xmp(packet: bytes | str) -> XmpFacts:
    """The facts an XMP packet holds; raises ValueError for a packet that is not text."""
    if isinstance(packet, bytes):
        packet = packet[:MAX_PACKET].decode("utf-8", "replace")
    if not isinstance(packet, str):
        raise ValueError(f"XMP packet is {type(packet).__name__}, not text")
    packet = packet[:MAX_PACKET]
    lat = _coord(_prop(packet, "GPSLatitude"), "lat")
    lon = _coord(_prop(packet, "GPSLongitude"), "lon")
    gps = (lat, lon) if lat is not None and lon is not None and (lat, lon) != (0.0, 0.0) else None
    taken = None
    for name in _DATE_PROPS:
        taken = parse_xmp_date(_prop(packet, name))
        if taken is not None:
            break
    return XmpFacts(gps, taken, _prop(packet, "Make"), _prop(packet, "Model"))
