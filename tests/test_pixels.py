"""True bit depth (v/257 for 16-bit, never the image's own maximum) and one pixel cap."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import exifmake as mk
from tests.support import run_cli
from workers.photos import PhotoError, decode

FIELD = Path(__file__).parent / "fixtures" / "fieldcases"


def _save(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _rgb16(a: np.ndarray) -> np.ndarray:
    return np.stack([a] * 3, -1).astype(np.uint16) * 257


def _rgba16(a: np.ndarray) -> np.ndarray:
    return np.concatenate([_rgb16(a), np.full((*a.shape, 1), 65535, np.uint16)], -1)


def _i32(a: np.ndarray) -> np.ndarray:
    """8-bit values on the signed 32-bit scale (2**31 - 1 is white)."""
    return (a.astype(np.int64) * 16843009 // 2).astype(np.int32)


def _crop(data: bytes) -> np.ndarray:
    return decode(data, resize=40, crop=32).crop


def _scan(seed: int = 0, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A dim 8-bit scan: values 16..64, as a flatbed gives for a faded print."""
    rng = np.random.default_rng(seed)
    return rng.integers(16, 65, size=size, dtype=np.uint16).astype(np.uint8)


def test_field_case_16bit_grey_equals_its_8bit_reference() -> None:
    """The network input of the dim 16-bit scan equals that of its 8-bit twin (mean 40)."""
    deep = _crop((FIELD / "04_png_16bit_grey_dim_scan.png").read_bytes())
    ref = _crop((FIELD / "04b_reference_same_scan_8bit.png").read_bytes())
    assert np.array_equal(deep, ref)
    assert deep.mean() == pytest.approx(40, abs=1)


@pytest.mark.parametrize(
    ("name", "deep"),
    [
        ("png 16-bit grey", lambda a: mk.png_16bit(a.astype(np.uint16) * 257, 0)),
        (
            "png 48-bit rgb",
            lambda a: mk.png_16bit(np.stack([a] * 3, -1).astype(np.uint16) * 257, 2),
        ),
        (
            "png 64-bit rgba",
            lambda a: mk.png_16bit(
                np.concatenate(
                    [
                        np.stack([a] * 3, -1).astype(np.uint16) * 257,
                        np.full((*a.shape, 1), 65535, np.uint16),
                    ],
                    -1,
                ),
                6,
            ),
        ),
        ("tiff 48-bit rgb", lambda a: mk.tiff_16bit_rgb(_rgb16(a))),
        ("tiff 48-bit rgb, big-endian", lambda a: mk.tiff_16bit_rgb(_rgb16(a), big_endian=True)),
        ("tiff 64-bit rgba", lambda a: mk.tiff_16bit_rgb(_rgba16(a), alpha=True)),
        ("tiff 16-bit grey", lambda a: _save(Image.fromarray(a.astype(np.uint16) * 257), "TIFF")),
        (
            "tiff 32-bit grey",
            lambda a: _save(
                Image.fromarray((a.astype(np.int64) * 16843009 // 2).astype(np.int32)), "TIFF"
            ),
        ),
        ("tiff float grey", lambda a: _save(Image.fromarray(a.astype(np.float32) / 255), "TIFF")),
    ],
)
def test_high_bit_depth_equals_8bit(name: str, deep) -> None:
    """Scaled by the bit depth, a deep image gives exactly the 8-bit image's input."""
    a = _scan(seed=len(name))
    ref = _crop(_save(Image.fromarray(a).convert("RGB"), "PNG"))
    got = _crop(deep(a))
    # 32-bit signed TIFF holds at most 2**31 - 1: half the unsigned scale, so half values
    tolerance = 1 if "32-bit" in name else 0
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= tolerance, name
    assert got.max() <= 65  # dim stays dim: never stretched to the image's own maximum


def test_float_image_is_clipped_to_its_range() -> None:
    arr = np.array([[-1.0, 0.5, 2.0, np.nan]] * 4, dtype=np.float32).repeat(8, 0).repeat(8, 1)
    photo = decode(_save(Image.fromarray(arr), "TIFF"), resize=32, crop=32)
    row = photo.crop[16, :, 0]
    assert row[0] == 0 and row[-1] == 0  # -1 and NaN clip to black
    assert 126 <= row[11] <= 129 and row[20] == 255  # 0.5 -> 128, 2.0 -> white


def _panorama(width: int, height: int) -> bytes:
    """A greyscale panorama of ``width`` x ``height`` (the 98 MP field case's shape)."""
    img = Image.linear_gradient("L").resize((width, height), Image.Resampling.NEAREST)
    return _save(img, "JPEG")


@pytest.fixture(scope="module")
def panorama() -> bytes:
    return _panorama(12000, 8192)


def test_98mp_panorama_under_the_cap_decodes(panorama: bytes) -> None:
    """12000 x 8192 = 98.3 MP is under SIGHTLINE_MAX_PIXELS's default (100 MP): Pillow's own
    ~89.5 MP threshold must not refuse it."""
    photo = decode(panorama, resize=64, crop=56)
    assert (photo.width, photo.height) == (12000, 8192)
    assert photo.decoded_size == (1500, 1024)  # DCT-scaled, never a full 98 MP raster


def test_the_setting_is_the_only_cap(panorama: bytes) -> None:
    """Lower the setting and the same photo is refused by it; raise it and Pillow's check
    moves with it."""
    with pytest.raises(PhotoError, match="exceeds 90000000"):
        decode(panorama, resize=64, crop=56, max_pixels=90_000_000)
    decode(panorama, resize=64, crop=56, max_pixels=400_000_000)
    assert Image.MAX_IMAGE_PIXELS == 400_000_000


def test_refused_above_the_cap_before_allocating() -> None:
    """A 40-byte-header JPEG declaring 60000 x 60000 (3.6 GP) is refused from its header:
    a decode would need gigabytes."""
    small = _save(Image.new("L", (16, 16)), "JPEG")
    sof = small.index(b"\xff\xc0")
    huge = bytearray(small)
    huge[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    with pytest.raises(
        PhotoError, match=r"too large: (60000x60000|3600000000) pixels exceeds 100000000"
    ):
        decode(bytes(huge), resize=32, crop=32)


@pytest.mark.slow
def test_inspect_follows_the_setting(panorama: bytes, tmp_path: Path) -> None:
    """`sightline inspect` decodes the panorama by default and refuses it when
    SIGHTLINE_MAX_PIXELS is set below its size, with the setting's number in the reason."""
    path = tmp_path / "pano.jpg"
    path.write_bytes(panorama)
    ok = run_cli("inspect", str(path), "--json", timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (json.loads(ok.stdout)["width"], json.loads(ok.stdout)["height"]) == (12000, 8192)
    low = run_cli("inspect", str(path), "--json", env={"SIGHTLINE_MAX_PIXELS": "50000000"})
    assert low.returncode == 2
    assert "exceeds 50000000" in json.loads(low.stdout)["error"]


def test_a_long_strip_is_cropped_before_it_is_resized(monkeypatch) -> None:
    """A 3 x 50,000 PNG (a few KB) was resized whole to 256 x 4.3 M pixels (4.5 GB peak) for
    a 224 crop. Past 16 crops' area only the crop's source region is resized: the same crop
    within one level of the whole resize."""
    from PIL import ImageFilter

    import workers.photos as photos

    rng = np.random.default_rng(0)
    strip = Image.fromarray(rng.integers(0, 255, (4000, 40, 3), dtype=np.uint8))
    buf = io.BytesIO()
    strip.filter(ImageFilter.GaussianBlur(3)).save(buf, format="PNG")
    cropped = decode(buf.getvalue(), resize=256, crop=224).crop.astype(int)
    monkeypatch.setattr(photos, "_WHOLE_RESIZE_CROPS", 10**9)
    whole = decode(buf.getvalue(), resize=256, crop=224).crop.astype(int)
    assert cropped.shape == (224, 224, 3) and np.abs(cropped - whole).max() <= 1
