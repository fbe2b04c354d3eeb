"""Decode photo bytes to the network's input crop: DCT-scaled JPEG drafts, EXIF orientation,
every common format converted to RGB, a pixel cap against decompression bombs."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF from iPhones
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - the worker extra installs it
    pass


class PhotoError(ValueError):
    """A photo that cannot be decoded: failed with this reason, never retried."""


@dataclass(frozen=True)
class DecodedPhoto:
    crop: np.ndarray  # uint8 (crop, crop, 3)
    format: str
    width: int  # after orientation
    height: int
    orientation: int
    decoded_size: tuple[int, int]  # the raster libjpeg produced (after DCT scaling)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode in {"I;16", "I;16B", "I;16L", "I"}:
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def decode(data: bytes, *, resize: int, crop: int, max_pixels: int = 100_000_000) -> DecodedPhoto:
    """Decode to a centre crop of ``crop`` pixels after resizing the shorter side to ``resize``.

    A multi-frame image (animated GIF, WebP, multi-page TIFF) is tagged by its first frame: Pillow
    opens at frame 0 and nothing here seeks.
    """
    if not data:
        raise PhotoError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, resize, crop, max_pixels)
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(f"image too large: {exc}") from exc
    except UnidentifiedImageError:
        raise PhotoError("not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise PhotoError(f"corrupt or truncated image: {exc}") from exc


def _decode(data: bytes, resize: int, crop: int, max_pixels: int) -> DecodedPhoto:
    img = Image.open(io.BytesIO(data))
    fmt = img.format or "unknown"
    w, h = img.size
    if w <= 0 or h <= 0:
        raise PhotoError("image has no pixels")
    if w * h > max_pixels:
        raise PhotoError(f"image too large: {w}x{h} pixels exceeds {max_pixels}")
    orientation = int(img.getexif().get(0x0112, 1) or 1)
    if not 1 <= orientation <= 8:
        orientation = 1
    # JPEG: let libjpeg scale by 1/2, 1/4 or 1/8 while decoding (never a full decode).
    img.draft("RGB", (resize, resize))
    img.load()
    decoded_size = img.size
    img = _to_rgb(ImageOps.exif_transpose(img) or img)
    out_w, out_h = (h, w) if orientation in {5, 6, 7, 8} else (w, h)
    scale = resize / min(img.size)
    new_size = (max(crop, round(img.size[0] * scale)), max(crop, round(img.size[1] * scale)))
    img = img.resize(new_size, Image.Resampling.BILINEAR)
    left, top = (new_size[0] - crop) // 2, (new_size[1] - crop) // 2
    arr = np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    return DecodedPhoto(arr, fmt, out_w, out_h, orientation, decoded_size)
