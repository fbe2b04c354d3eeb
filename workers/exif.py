"""EXIF facts with exifread: GPS, time taken (with its offset), camera."""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import exifread

logging.getLogger("exifread").setLevel(logging.ERROR)  # it logs every odd tag


@dataclass(frozen=True)
class ExifFacts:
    gps: tuple[float, float] | None = None  # (lat, lon)
    taken_at: datetime | None = None  # aware when the photo gave an offset, else naive
    camera: str | None = None
    orientation: int = 1


def _ratio(value: Any) -> float:
    num, den = getattr(value, "num", None), getattr(value, "den", None)
    if num is None:
        return float(value)
    if not den:
        raise ZeroDivisionError("zero denominator")
    return num / den


def _dms(tag: Any, ref: Any, limit: float) -> float | None:
    try:
        values = list(tag.values)
        if not 1 <= len(values) <= 3:
            return None
        parts = [_ratio(v) for v in values] + [0.0, 0.0]
        deg = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    except (ZeroDivisionError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    letter = str(ref.values if ref is not None else "").strip().upper()[:1]
    if letter in {"S", "W"}:
        deg = -deg
    if not math.isfinite(deg) or abs(deg) > limit:
        return None
    return deg


def parse_gps(tags: dict[str, Any]) -> tuple[float, float] | None:
    """Degrees/minutes/seconds with N/S/E/W references; bad, out-of-range or 0,0 is None."""
    lat_tag, lon_tag = tags.get("GPS GPSLatitude"), tags.get("GPS GPSLongitude")
    if lat_tag is None or lon_tag is None:
        return None
    lat = _dms(lat_tag, tags.get("GPS GPSLatitudeRef"), 90.0)
    lon = _dms(lon_tag, tags.get("GPS GPSLongitudeRef"), 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        return None
    return lat, lon


def parse_taken_at(tags: dict[str, Any]) -> datetime | None:
    raw = tags.get("EXIF DateTimeOriginal") or tags.get("Image DateTime")
    if raw is None:
        return None
    try:
        when = datetime.strptime(str(raw.values).strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = tags.get("EXIF OffsetTimeOriginal") or tags.get("EXIF OffsetTime")
    if offset is not None:
        text = str(offset.values).strip()
        try:
            sign = -1 if text.startswith("-") else 1
            hours, minutes = text.lstrip("+-").split(":")
            delta = timedelta(hours=int(hours), minutes=int(minutes))
            if delta <= timedelta(hours=14):
                when = when.replace(tzinfo=timezone(sign * delta))
        except (ValueError, OverflowError):  # "+99999999999:00" overflows timedelta
            pass
    return when


def read_exif(data: bytes) -> ExifFacts:
    """Read EXIF from image bytes; a file without (or with broken) EXIF gives empty facts."""
    try:
        tags = exifread.process_file(io.BytesIO(data), details=False)
    except Exception:  # exifread raises many kinds on odd files; EXIF is optional
        return ExifFacts()
    make = str(tags.get("Image Make", "")).strip().strip("\x00")
    model = str(tags.get("Image Model", "")).strip().strip("\x00")
    camera = " ".join(p for p in (make, model) if p) or None
    orientation = 1
    if "Image Orientation" in tags:
        try:
            value = int(tags["Image Orientation"].values[0])
            orientation = value if 1 <= value <= 8 else 1
        except (ValueError, TypeError, IndexError):
            pass
    return ExifFacts(parse_gps(tags), parse_taken_at(tags), camera, orientation)
