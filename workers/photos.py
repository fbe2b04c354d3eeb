"""Decode photo bytes to the network's input crop: DCT-scaled JPEG drafts, EXIF orientation,
every common format converted to RGB by its true bit depth, one pixel cap against
decompression bombs."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from workers.exif import ExifFacts, facts_from_image  # also registers the HEIC opener
from workers.pixels import to_rgb

DEFAULT_MAX_PIXELS = 100_000_000  # SIGHTLINE_MAX_PIXELS's default
T = TypeVar("T")

# EXIF orientation -> the transposes that undo it (EXIF 2.32, tag 0x0112).
_T = Image.Transpose
_UNDO = {
    2: (_T.FLIP_LEFT_RIGHT,),
    3: (_T.ROTATE_180,),
    4: (_T.FLIP_TOP_BOTTOM,),
    5: (_T.TRANSPOSE,),
    6: (_T.ROTATE_270,),
    7: (_T.TRANSVERSE,),
    8: (_T.ROTATE_90,),
}


class PhotoError(ValueError):
    """A photo that cannot be decoded: failed with this reason, never retried."""


class NotAnImage(PhotoError):
    """Bytes no decoder recognises: for a key with no extension this is "ignored"."""


class NoPhoto(NotAnImage):
    """An object that is no photo and never claimed to be one: zero bytes, or bytes no
    decoder recognises under a Content-Type that is not an image's. "ignored" whatever its
    key: it replaced what the key held, and is nobody's broken photo."""


@dataclass(frozen=True)
class DecodedPhoto:
    crop: np.ndarray  # uint8 (crop, crop, 3)
    format: str
    width: int  # after orientation
    height: int
    orientation: int
    decoded_size: tuple[int, int]  # the raster libjpeg produced (after DCT scaling)
    exif: ExifFacts = field(default_factory=ExifFacts)  # read from the block this decoder found


def set_pixel_cap(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb threshold the one cap, SIGHTLINE_MAX_PIXELS.

    Pillow refuses above 2x ``Image.MAX_IMAGE_PIXELS`` (default ~89.5 MP) and warns above it;
    left alone it is a second, hidden cap below ours. Set to ours, Pillow's check and ours
    agree (its warning is raised as a refusal by ``decode``), and the setting can raise it.
    """
    if max_pixels != Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def decode(
    data: bytes, *, resize: int, crop: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedPhoto:
    """Decode to a centre crop of ``crop`` pixels after resizing the shorter side to ``resize``.

    A multi-frame image (animated GIF, WebP, multi-page TIFF) is tagged by its first frame:
    Pillow opens at frame 0 and nothing here seeks. Raises PhotoError (NotAnImage for
    unrecognised bytes); above ``max_pixels`` (width x height as the header declares it) the
    raster is refused before it is allocated.
    """
    return _guarded(lambda: _decode(data, resize, crop, max_pixels), data, max_pixels)


def decode_whole(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The whole photo as the worker sees it, for drawing on (``sightline explain``): RGB
    by its true bit depth, EXIF orientation undone, the same pixel cap. Raises PhotoError."""
    return _guarded(lambda: _open_oriented(data, max_pixels, draft=None)[0], data, max_pixels)


def _guarded(fn: Callable[[], T], data: bytes, max_pixels: int) -> T:
    """Run a decode with Pillow's bomb check at ``max_pixels``, its errors as PhotoError."""
    if not data:
        raise NoPhoto("empty file")
    set_pixel_cap(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return fn()
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own check, at our cap (set_pixel_cap): the same refusal in our words.
        m = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{m.group(1)} pixels" if m else "the image"
        raise PhotoError(f"image too large: {size} exceeds {max_pixels}") from None
    except UnidentifiedImageError:
        raise NotAnImage("not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise PhotoError(f"corrupt or truncated image: {exc}") from exc


def _open_oriented(
    data: bytes, max_pixels: int, draft: int | None
) -> tuple[Image.Image, str, int, int, int, tuple[int, int], ExifFacts]:
    """(RGB image with its orientation undone, format, width and height after orientation,
    orientation, the decoded raster's size, EXIF facts)."""
    img = Image.open(io.BytesIO(data))
    fmt = img.format or "unknown"
    w, h = img.size
    if w <= 0 or h <= 0:
        raise PhotoError("image has no pixels")
    if w * h > max_pixels:
        raise PhotoError(f"image too large: {w}x{h} pixels exceeds {max_pixels}")
    if draft:  # JPEG: let libjpeg scale by 1/2, 1/4 or 1/8 while decoding (no full decode)
        img.draft("RGB", (draft, draft))
    img.load()
    decoded_size = img.size
    facts = facts_from_image(img)
    orientation = facts.orientation
    img = to_rgb(img)
    for step in _UNDO.get(orientation, ()):
        img = img.transpose(step)
    out_w, out_h = (h, w) if orientation in {5, 6, 7, 8} else (w, h)
    return img, fmt, out_w, out_h, orientation, decoded_size, facts


# Resized whole, a long strip (3 x 50,000 px, a few KB of PNG) became 256 x 4.3 M pixels:
# 4.5 GB for one photo. Past this many crops' area only the crop's own region is resized.
_WHOLE_RESIZE_CROPS = 16


def _decode(data: bytes, resize: int, crop: int, max_pixels: int) -> DecodedPhoto:
    img, fmt, out_w, out_h, orientation, decoded_size, facts = _open_oriented(
        data, max_pixels, draft=resize
    )
    scale = resize / min(img.size)
    new_size = (max(crop, round(img.size[0] * scale)), max(crop, round(img.size[1] * scale)))
    left, top = (new_size[0] - crop) // 2, (new_size[1] - crop) // 2
    if new_size[0] * new_size[1] <= _WHOLE_RESIZE_CROPS * crop * crop:
        img = img.resize(new_size, Image.Resampling.BILINEAR)
        img = img.crop((left, top, left + crop, top + crop))
    else:  # the same crop, resized from its source region alone
        sx, sy = img.size[0] / new_size[0], img.size[1] / new_size[1]
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        img = img.resize((crop, crop), Image.Resampling.BILINEAR, box=box)
    arr = np.asarray(img, dtype=np.uint8)
    return DecodedPhoto(arr, fmt, out_w, out_h, orientation, decoded_size, facts)
