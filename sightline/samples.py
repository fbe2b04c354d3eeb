"""Sample photos for the demo, the tests and the benchmarks: the real photo shipped with
the project, and generated JPEGs with EXIF GPS, time taken, camera and orientation."""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources

import numpy as np
from PIL import Image

GPS_IFD, EXIF_IFD = 0x8825, 0x8769


@dataclass(frozen=True)
class SamplePhoto:
    key: str
    data: bytes
    note: str


def real_photo() -> bytes:
    """mountains.jpg: a real 960x720 photo from the Places365 demo (no GPS)."""
    return (resources.files("sightline") / "data" / "mountains.jpg").read_bytes()


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    deg = int(value)
    minutes = int((value - deg) * 60)
    seconds = round(((value - deg) * 60 - minutes) * 60, 4)
    return (float(deg), float(minutes), seconds)


def synthetic_jpeg(
    *,
    width: int = 800,
    height: int = 600,
    seed: int = 0,
    gps: tuple[float, float] | None = None,
    taken_at: str | None = None,
    offset: str | None = None,
    camera: tuple[str, str] | None = ("SightlineCam", "Demo 1"),
    orientation: int | None = None,
    quality: int = 90,
    fmt: str = "JPEG",
) -> bytes:
    """A generated photo (smooth colour fields and noise) with the EXIF asked for."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 215, size=3)
    freq = rng.uniform(0.002, 0.02, size=3)
    img = np.stack(
        [base[c] + 40 * np.sin(x * freq[c] + y * freq[(c + 1) % 3]) for c in range(3)], axis=-1
    )
    img += rng.normal(0, 12, size=img.shape)
    pil = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    exif = Image.Exif()
    if camera:
        exif[0x010F], exif[0x0110] = camera
    if orientation:
        exif[0x0112] = orientation
    if taken_at:
        sub = exif.get_ifd(EXIF_IFD)
        sub[0x9003] = taken_at
        if offset:
            sub[0x9011] = offset
    if gps:
        g = exif.get_ifd(GPS_IFD)
        g[1] = "N" if gps[0] >= 0 else "S"
        g[2] = _dms(gps[0])
        g[3] = "E" if gps[1] >= 0 else "W"
        g[4] = _dms(gps[1])
    buf = io.BytesIO()
    pil.save(buf, fmt, exif=exif, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def demo_photos(owner: str = "demo") -> list[SamplePhoto]:
    """What the demo uploads: real and generated photos, plus two that are not photos."""
    p = f"users/{owner}/"
    return [
        SamplePhoto(p + "holiday/mountains.jpg", real_photo(), "real photo, no GPS"),
        SamplePhoto(
            p + "paris/eiffel tower+friends.jpg",
            synthetic_jpeg(
                seed=1, gps=(48.85837, 2.29448), taken_at="2024:05:01 10:15:00", offset="+02:00"
            ),
            "generated, GPS Paris, key with a space and a plus",
        ),
        SamplePhoto(
            p + "москва/красная площадь.jpg",
            synthetic_jpeg(
                seed=2, gps=(55.75393, 37.62079), taken_at="2024:07:12 18:40:00", orientation=6
            ),
            "generated, GPS Moscow, non-ASCII key, rotated (orientation 6)",
        ),
        SamplePhoto(
            p + "sydney/opera.jpg",
            synthetic_jpeg(
                seed=3, gps=(-33.85678, 151.21530), taken_at="2023:12:31 23:59:00", offset="+11:00"
            ),
            "generated, GPS Sydney (southern hemisphere)",
        ),
        SamplePhoto(p + "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "corrupt file"),
        SamplePhoto(p + "notes.txt", b"not a photo", "not an image: the handler ignores it"),
    ]
