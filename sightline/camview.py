"""Draw a class activation map over a photo, with its labels written on it (Pillow, numpy)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def jet(values: np.ndarray) -> np.ndarray:
    """(H, W) values in 0..1 -> (H, W, 3) uint8 blue-to-red colours."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0])  # red, green, blue peaks along 4 * v
    rgb = np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def overlay(photo: Image.Image, cam: np.ndarray, lines: list[str], warn: str | None) -> Image.Image:
    """The photo with the map blended in (stronger where the map is high) and a caption box
    at the top; ``warn`` (e.g. UNTRAINED) is the first line, in red."""
    base = np.asarray(photo.convert("RGB"), dtype=np.float32)
    if cam.shape != base.shape[:2]:
        raise ValueError(f"map {cam.shape} does not match photo {base.shape[:2]}")
    alpha = (0.25 + 0.45 * np.clip(cam, 0.0, 1.0))[..., None]
    blended = base * (1.0 - alpha) + jet(cam).astype(np.float32) * alpha
    out = Image.fromarray(blended.clip(0, 255).astype(np.uint8))
    _caption(out, ([warn] if warn else []) + lines, warn is not None)
    return out


def _caption(img: Image.Image, lines: list[str], first_is_warning: bool) -> None:
    size = max(10, min(img.width, img.height) // 32)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(img, "RGBA")
    pad = max(2, size // 4)
    y = pad
    for n, line in enumerate(lines):
        box = draw.textbbox((pad, y), line, font=font)
        draw.rectangle((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), (0, 0, 0, 170))
        colour = (255, 60, 60) if first_is_warning and n == 0 else (255, 255, 255)
        draw.text((pad, y), line, fill=colour, font=font)
        y = box[3] + 2 * pad
