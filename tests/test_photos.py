"""Decoding photos to the network's input, and reading their EXIF."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image

from sightline.samples import synthetic_jpeg
from workers.exif import read_exif
from workers.photos import PhotoError, decode

# Where the stored raster's top-left corner appears once EXIF orientation is applied.
CORNER_AFTER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _corner_image(orientation: int) -> bytes:
    img = Image.new("RGB", (120, 120), (128, 128, 128))
    img.paste((255, 0, 0), (0, 0, 60, 60))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(img, "JPEG", exif=exif, quality=95)


def _red_quadrant(crop: np.ndarray) -> str:
    h, w = crop.shape[0] // 2, crop.shape[1] // 2
    quads = {"tl": crop[:h, :w], "tr": crop[:h, w:], "bl": crop[h:, :w], "br": crop[h:, w:]}
    return max(quads, key=lambda q: quads[q][..., 0].mean() - quads[q][..., 1].mean())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    """Each of the 8 EXIF orientations puts the stored top-left corner where it belongs."""
    photo = decode(_corner_image(orientation), resize=32, crop=32)
    assert photo.orientation == orientation
    assert _red_quadrant(photo.crop) == CORNER_AFTER[orientation]


@pytest.mark.parametrize(
    ("orientation", "size"), [(1, (800, 600)), (6, (600, 800)), (8, (600, 800))]
)
def test_width_and_height_are_reported_after_orientation(orientation: int, size) -> None:
    photo = decode(synthetic_jpeg(orientation=orientation), resize=64, crop=56)
    assert (photo.width, photo.height) == size
    assert photo.crop.shape == (56, 56, 3) and photo.crop.dtype == np.uint8


def test_large_jpeg_is_decoded_with_dct_scaling() -> None:
    """A 4000x3000 JPEG is decoded at 1/8 scale (500x375), never at full size."""
    data = synthetic_jpeg(width=4000, height=3000, quality=80)
    photo = decode(data, resize=256, crop=224)
    assert photo.decoded_size == (500, 375)
    assert (photo.width, photo.height) == (4000, 3000)


def _sixteen_bit_png() -> bytes:
    arr = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    return _encode(img, "PNG")


@pytest.mark.parametrize(
    ("name", "data", "fmt"),
    [
        ("png rgba", lambda: _encode(Image.new("RGBA", (64, 48), (0, 0, 255, 128)), "PNG"), "PNG"),
        (
            "png palette",
            lambda: _encode(Image.new("RGB", (64, 48), "red").convert("P"), "PNG"),
            "PNG",
        ),
        ("png 16-bit", _sixteen_bit_png, "PNG"),
        ("jpeg cmyk", lambda: _encode(Image.new("CMYK", (64, 48), (0, 255, 0, 0)), "JPEG"), "JPEG"),
        ("webp", lambda: _encode(Image.new("RGB", (64, 48), "green"), "WEBP"), "WEBP"),
        ("tiff", lambda: _encode(Image.new("RGB", (64, 48), "blue"), "TIFF"), "TIFF"),
        ("gif", lambda: _encode(Image.new("RGB", (64, 48), "blue").convert("P"), "GIF"), "GIF"),
        ("heif", lambda: _encode(Image.new("RGB", (64, 48), "blue"), "HEIF"), "HEIF"),
        ("grey jpeg", lambda: _encode(Image.new("L", (64, 48), 90), "JPEG"), "JPEG"),
    ],
)
def test_every_format_decodes_to_rgb(name: str, data, fmt: str) -> None:
    """Formats and modes the worker meets all become uint8 RGB crops."""
    photo = decode(data(), resize=32, crop=32)
    assert photo.format == fmt
    assert photo.crop.shape == (32, 32, 3)


def test_alpha_is_flattened_on_white() -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    photo = decode(_encode(img, "PNG"), resize=32, crop=32)
    assert photo.crop.min() == 255


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"just some text, not a photo", "not an image"),
        (synthetic_jpeg()[:3000], "corrupt or truncated"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "not an image|corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "not an image|corrupt"),
    ],
)
def test_bad_files_fail_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(PhotoError, match=reason):
        decode(data, resize=32, crop=32)


def test_pixel_cap_refuses_a_decompression_bomb() -> None:
    """A small file declaring a huge raster is refused before it is decoded."""
    bomb = _encode(Image.new("L", (6000, 6000), 0), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(PhotoError, match="too large"):
        decode(bomb, resize=32, crop=32, max_pixels=10_000_000)


@pytest.mark.parametrize(
    "gps", [(48.85837, 2.29448), (-33.85678, 151.2153), (40.68925, -74.0445), (-22.9519, -43.2105)]
)
def test_gps_in_all_four_hemispheres(gps) -> None:
    facts = read_exif(synthetic_jpeg(width=64, height=48, gps=gps))
    assert facts.gps == pytest.approx(gps, abs=1e-4)


def test_gps_at_zero_zero_is_no_gps() -> None:
    assert read_exif(synthetic_jpeg(width=64, height=48, gps=(0.0, 0.0))).gps is None


def _exif_gps_raw(lat, lon) -> bytes:
    img = Image.new("RGB", (32, 32))
    exif = Image.Exif()
    g = exif.get_ifd(0x8825)
    g[1], g[2], g[3], g[4] = "N", lat, "E", lon
    return _encode(img, "JPEG", exif=exif)


def test_out_of_range_gps_is_no_gps() -> None:
    assert read_exif(_exif_gps_raw((95.0, 0.0, 0.0), (10.0, 0.0, 0.0))).gps is None
    assert read_exif(_exif_gps_raw((45.0, 0.0, 0.0), (190.0, 0.0, 0.0))).gps is None


def test_time_taken_keeps_its_offset() -> None:
    facts = read_exif(
        synthetic_jpeg(width=64, height=48, taken_at="2024:05:01 10:15:00", offset="-05:30")
    )
    assert facts.taken_at is not None
    assert facts.taken_at.utcoffset() == -timedelta(hours=5, minutes=30)
    assert (facts.taken_at.hour, facts.taken_at.minute) == (10, 15)


def test_time_taken_without_offset_is_naive() -> None:
    facts = read_exif(synthetic_jpeg(width=64, height=48, taken_at="2024:05:01 10:15:00"))
    assert facts.taken_at is not None and facts.taken_at.tzinfo is None


def test_camera_make_and_model() -> None:
    facts = read_exif(synthetic_jpeg(width=64, height=48, camera=("Apple", "iPhone 15")))
    assert facts.camera == "Apple iPhone 15"


def test_no_exif_gives_empty_facts() -> None:
    facts = read_exif(_encode(Image.new("RGB", (8, 8)), "PNG"))
    assert facts.gps is None and facts.taken_at is None and facts.camera is None
