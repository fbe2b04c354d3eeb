"""EXIF facts from the block the decoder itself found: GPS, time taken, camera, orientation.

Pillow (and pillow-heif for HEIC/HEIF) locate the EXIF block in every container they decode:
JPEG APP1 wherever it sits among the segments, PNG ``eXIf`` and the "Raw profile type exif"
text chunk, the WebP ``EXIF`` chunk, HEIC of any brand, TIFF's own tags. Reading every fact
from that one block means pixels, orientation, GPS and time can never disagree about which
block they came from. XMP (GPS, dates, camera) is the fallback for files that carry only XMP.

exifread was dropped: it scanned the raw bytes with container parsers of its own, which
missed HEIC with major brand ``heix``, HEIC written by libheif, JPEG whose APP1 follows
several KB of other segments, PNG ``eXIf``/zTXt and WebP, while Pillow found the block in
each; nothing sightline reads (no maker notes) needed it.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image, UnidentifiedImageError

from workers.gps import gps_from_ifd
from workers.pgtext import clean_text
from workers.taken import taken_from_exif
from workers.xmp import XmpFacts, read_xmp

log = logging.getLogger("sightline.exif")

try:  # HEIC/HEIF from iPhones, and from libheif writers
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - the worker extra installs it
    pass

GPS_IFD, EXIF_IFD = 0x8825, 0x8769
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
# Where Pillow keeps a raw EXIF block it found (the key "exif", or PNG's text chunks).
_RAW_KEYS = ("exif", "Raw profile type exif", "Raw profile type APP1")
CAMERA_MAX = 128  # characters kept of Make + Model
READ_MAX_PIXELS = 100_000_000  # read_exif's cap when Pillow's own is switched off


@dataclass(frozen=True)
class ExifFacts:
    gps: tuple[float, float] | None = None  # (lat, lon) in degrees
    taken_at: datetime | None = None  # aware when the photo gave an offset, else naive
    camera: str | None = None
    orientation: int = 1
    warnings: tuple[str, ...] = ()  # one line each: a block present but not readable


def _raw_block(img: Image.Image) -> bool:
    return any(img.info.get(k) for k in _RAW_KEYS)


def _ifd(exif: Image.Exif, tag: int, problems: list[str], name: str) -> Mapping[int, Any]:
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            ifd = dict(exif.get_ifd(tag))
    except Exception as exc:  # Pillow raises many kinds on a broken sub-IFD offset
        problems.append(f"EXIF {name} IFD unreadable: {type(exc).__name__}: {exc}")
        return {}
    if said:  # Pillow says "Corrupt EXIF data" as a warning and returns what it could
        problems.append(
            f"EXIF {name} IFD unreadable (pointer {exif.get(tag)!r}): {said[0].message}"
        )
    return ifd


def _camera(make: Any, model: Any) -> str | None:
    make_s, model_s = clean_text(make, CAMERA_MAX) or "", clean_text(model, CAMERA_MAX) or ""
    if make_s and model_s.lower().startswith(make_s.lower()):
        make_s = ""  # "Canon" + "Canon EOS R5": say it once
    return clean_text(" ".join(p for p in (make_s, model_s) if p), CAMERA_MAX)


def _orientation(value: Any) -> int:
    try:
        n = int(value[0] if isinstance(value, tuple) else value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return 1
    return n if 1 <= n <= 8 else 1


def facts_from_image(img: Image.Image) -> ExifFacts:
    """Facts from an opened Pillow image's own EXIF block, XMP filling what it lacks.

    Never raises: a block that is present but unreadable gives a warning in ``warnings``
    (and the facts XMP can still supply), never silence.
    """
    problems: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")  # Pillow reports a corrupt block as a warning
            exif = img.getexif()
    except Exception as exc:
        problems.append(f"EXIF block unreadable: {type(exc).__name__}: {exc}")
        exif = Image.Exif()
    else:
        corrupt = [w for w in said if "EXIF" in str(w.message) or "exif" in str(w.message)]
        if corrupt:
            problems.append(f"EXIF block partly unreadable: {corrupt[0].message}")
    if not len(exif) and not problems and img.info.get("Raw profile type APP1"):
        exif = _raw_profile(img.info["Raw profile type APP1"], problems)
    if _raw_block(img) and not len(exif) and not problems:
        problems.append("EXIF block present but holds no readable tags")
    gps_ifd = _ifd(exif, GPS_IFD, problems, "GPS") if GPS_IFD in exif else {}
    exif_ifd = _ifd(exif, EXIF_IFD, problems, "Exif") if EXIF_IFD in exif else {}
    ifd0 = dict(exif)
    gps = gps_from_ifd(gps_ifd)
    taken = taken_from_exif(ifd0, exif_ifd)
    camera = _camera(ifd0.get(_MAKE), ifd0.get(_MODEL))
    if gps is None or taken is None or camera is None:
        xmp = _xmp(img, problems)
        gps = gps or xmp.gps
        taken = taken or xmp.taken_at
        camera = camera or _camera(xmp.make, xmp.model)
    said = tuple(" ".join(p.split()) for p in problems)  # one line each
    return ExifFacts(gps, taken, camera, _orientation(ifd0.get(_ORIENTATION, 1)), said)


def _raw_profile(text: Any, problems: list[str]) -> Image.Exif:
    """EXIF from an ImageMagick "Raw profile" text chunk: "\\n<name>\\n<length>\\n<hex>".
    Pillow reads only the "Raw profile type exif" spelling; "APP1" is read here."""
    exif = Image.Exif()
    try:
        lines = str(text).strip().split("\n")
        data = bytes.fromhex("".join(lines[2:]))
        exif.load(data)
    except Exception as exc:
        problems.append(f"EXIF raw profile unreadable: {type(exc).__name__}: {exc}")
    return exif


def _xmp(img: Image.Image, problems: list[str]) -> XmpFacts:
    packet = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    tag = getattr(img, "tag_v2", None)  # TIFF keeps XMP in tag 700
    if not packet and tag is not None:
        packet = tag.get(700)
    if not packet:
        return XmpFacts()
    try:
        return read_xmp(packet)
    except Exception as exc:  # a broken packet is a warning, like a broken EXIF block
        problems.append(f"XMP packet unreadable: {type(exc).__name__}: {exc}")
        return XmpFacts()


def read_exif(data: bytes) -> ExifFacts:
    """Facts from image bytes (opened with the decoder, pixels not decoded where the
    format allows); bytes that are not an image give empty facts."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return ExifFacts()
    except Exception:  # a plugin bug on hostile bytes: no facts, never a crash
        log.debug("cannot open image for EXIF", exc_info=True)
        return ExifFacts()
    with img:
        if img.width * img.height > (Image.MAX_IMAGE_PIXELS or READ_MAX_PIXELS):
            # some formats (PNG) decode pixels to find a late EXIF chunk: not past the cap
            return ExifFacts(warnings=("image above the pixel cap: EXIF not read",))
        return facts_from_image(img)
