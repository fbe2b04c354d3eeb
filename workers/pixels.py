"""Any decoded Pillow image to 8-bit RGB, scaled by its true bit depth.

High-bit-depth samples are scaled by the range their bit depth allows (v/257 for 16-bit,
v/16843009 for 32-bit), never by the image's own maximum: a dim 16-bit scan must look as
dim as its 8-bit twin. Float images are taken as [0, 1] (TIFF SampleFormat 3, the range
image tools write) and clipped to it. Pillow already reduces 48/64-bit RGB(A) PNG and TIFF
to 8 bits per channel by the bit depth; greyscale 16/32-bit and float need this module.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_BITS_PER_SAMPLE, _SAMPLE_FORMAT = 258, 339  # TIFF tags
_SIGNED = 2  # SampleFormat: two's complement integer


def _int_range(img: Image.Image) -> tuple[float, float]:
    """(low, high) of an integer greyscale image's samples, from its format's bit depth."""
    if img.mode.startswith("I;16"):
        return (-32768.0, 32767.0) if img.mode.endswith("S") else (0.0, 65535.0)
    bits, signed = 16, False  # Pillow opens 16-bit PGM/PNG as "I" where not "I;16"
    tag = getattr(img, "tag_v2", None)
    if tag is not None:
        value = tag.get(_BITS_PER_SAMPLE)
        first = value[0] if isinstance(value, tuple) and value else value
        if isinstance(first, int) and 1 <= first <= 32:
            bits = first
        fmt = tag.get(_SAMPLE_FORMAT)
        signed = (fmt[0] if isinstance(fmt, tuple) and fmt else fmt) == _SIGNED
    if signed:
        return 0.0, float(2 ** (bits - 1) - 1)  # negative samples clip to black
    return 0.0, float(2**bits - 1)


def _grey8(arr: np.ndarray, low: float, high: float) -> Image.Image:
    scaled = (arr.astype(np.float64) - low) * (255.0 / (high - low))
    return Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8)).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as mode RGB: alpha flattened on white, high bit depths scaled by their depth."""
    if img.mode == "RGB":
        return img
    if img.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        img.mode == "P" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode.startswith("I"):
        low, high = _int_range(img)
        return _grey8(np.asarray(img), low, high)
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return _grey8(arr.clip(0.0, 1.0), 0.0, 1.0)
    return img.convert("RGB")
