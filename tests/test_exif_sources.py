"""EXIF is read from the block the decoder found, in every container; XMP fills in; a broken
block leaves a warning. The field cases are one file of each kind; these are more."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests import exifmake as mk
from workers.exif import read_exif
from workers.photos import decode

FIELD = Path(__file__).parent / "fixtures" / "fieldcases"
EXPECTED = json.loads((FIELD / "expected.json").read_text())

GPS = ((35.0, 39.0, 0.0), "N", (139.0, 45.0, 0.0), "E")  # 35.65, 139.75
BLOCK = dict(gps=GPS, taken="2023:10:14 09:30:00", offsets=("+09:00", None, None))

CONTAINERS = {
    "jpeg": lambda e: mk.jpeg(e),
    "jpeg, APP1 after 180 KB of XMP/ICC": lambda e: mk.jpeg_late_app1(e),
    "png eXIf": mk.png_exif_chunk,
    "png zTXt raw profile": mk.png_raw_profile,
    "png tEXt raw profile": lambda e: mk.png_raw_profile(e, compressed=False),
    "png raw profile APP1": mk.png_raw_profile_app1,
    "webp EXIF chunk": mk.webp,
    "heic by libheif": mk.heic,
    "heic brand heix": lambda e: mk.heic(e, brand=b"heix"),
    "heic brand mif1": lambda e: mk.heic(e, brand=b"mif1"),
    "avif": mk.avif,
}


@pytest.mark.parametrize("kind", CONTAINERS)
def test_every_container_gives_gps_time_and_camera(kind: str) -> None:
    """Wherever the container keeps EXIF, GPS, offset time and camera are read from it."""
    data = CONTAINERS[kind](mk.exif_block(**BLOCK))
    facts = read_exif(data)
    assert facts.gps == pytest.approx((35.65, 139.75), abs=1e-6)
    assert facts.taken_at == datetime.fromisoformat("2023-10-14T09:30:00+09:00")
    assert facts.taken_at.utcoffset() == timedelta(hours=9)
    assert facts.camera == "ExampleCam X1"
    assert facts.warnings == ()
    # decode() reads the same facts from the image it opened
    assert decode(data, resize=32, crop=32).exif == facts


@pytest.mark.parametrize("kind", ["jpeg", "png eXIf", "png zTXt raw profile", "webp EXIF chunk"])
@pytest.mark.parametrize(("orientation", "size"), [(1, (64, 48)), (6, (48, 64)), (8, (48, 64))])
def test_orientation_comes_from_the_same_block(kind: str, orientation: int, size) -> None:
    """Orientation is one of the facts of that block: width and height follow it."""
    photo = decode(CONTAINERS[kind](mk.exif_block(orientation=orientation)), resize=32, crop=32)
    assert photo.orientation == orientation == photo.exif.orientation
    assert (photo.width, photo.height) == size


@pytest.mark.parametrize(("orientation", "size"), [(1, (64, 48)), (6, (48, 64)), (8, (48, 64))])
def test_tiff_orientation_is_applied_once(orientation: int, size) -> None:
    """Pillow's TIFF decoder applies the orientation tag itself and clears it: the photo is
    turned once, not twice. (Pillow's TIFF writer drops the GPS IFD, so TIFF GPS is not
    generated here.)"""
    photo = decode(mk.tiff(mk.exif_block(orientation=orientation)), resize=32, crop=32)
    assert (photo.width, photo.height) == size
    assert photo.exif.camera == "ExampleCam X1"


@pytest.mark.parametrize(
    "name",
    [n for n in EXPECTED if not n.startswith("03_")],
)
def test_field_case_gives_its_right_value(name: str) -> None:
    """Each photo field case (tests/fixtures/fieldcases) gives expected.json's value."""
    want = EXPECTED[name]
    photo = decode((FIELD / name).read_bytes(), resize=32, crop=32)
    facts = photo.exif
    if "size" in want:
        assert [photo.width, photo.height] == want["size"]
    if "gps" in want:
        assert facts.gps == pytest.approx(tuple(want["gps"]), abs=1e-4)
    if "taken" in want:
        assert facts.taken_at is not None
        assert facts.taken_at.replace(tzinfo=None).isoformat() == want["taken"]
    if "camera" in want:
        assert want["camera"] in (facts.camera or "")


def test_heix_field_case_keeps_its_offset() -> None:
    facts = read_exif((FIELD / "01a_heic_heix_brand.heic").read_bytes())
    assert facts.taken_at is not None and facts.taken_at.utcoffset() == timedelta(hours=9)


@pytest.mark.parametrize("writer", [mk.jpeg_xmp_only, mk.png_xmp_only])
def test_xmp_only_files_give_gps_and_time(writer) -> None:
    """A file with XMP and no EXIF: GPS ("DD,MM.mmk") and the ISO date with offset."""
    packet = mk.xmp_packet(
        exif__GPSLatitude="48,51.5022N",
        exif__GPSLongitude="2,17.6688E",
        exif__DateTimeOriginal="2019-04-15T18:50:00+02:00",
        tiff__Make="ExampleCam",
        tiff__Model="X2",
    )
    facts = read_exif(writer(packet))
    assert facts.gps == pytest.approx((48.85837, 2.29448), abs=1e-5)
    assert facts.taken_at == datetime.fromisoformat("2019-04-15T18:50:00+02:00")
    assert facts.camera == "ExampleCam X2"


def test_exif_wins_over_xmp_and_xmp_fills_only_the_gaps() -> None:
    """EXIF time and camera stay; XMP supplies the GPS the EXIF block lacks."""
    exif = mk.exif_block(taken="2020:01:02 03:04:05")
    plain = mk.jpeg(exif)
    packet = mk.xmp_packet(
        exif__GPSLatitude="10,30,0S",
        exif__GPSLongitude="20,15,0W",
        exif__DateTimeOriginal="1999-01-01T00:00:00",
    )
    data = plain[:2] + mk._segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet) + plain[2:]
    facts = read_exif(data)
    assert facts.taken_at == datetime(2020, 1, 2, 3, 4, 5)
    assert facts.gps == pytest.approx((-10.5, -20.25))
    assert facts.camera == "ExampleCam X1"


def test_unreadable_block_leaves_a_warning() -> None:
    """A block that is there but cannot be parsed is said, never silent."""
    facts = read_exif(mk.jpeg_broken_exif())
    assert facts.gps is None and facts.taken_at is None
    assert len(facts.warnings) == 1 and "EXIF" in facts.warnings[0]
    assert "\n" not in facts.warnings[0]
    assert decode(mk.jpeg_broken_exif(), resize=32, crop=32).exif.warnings == facts.warnings


def test_no_exif_at_all_is_no_warning() -> None:
    assert read_exif(mk.jpeg(mk.exif_block(camera=None))).warnings == ()
    assert read_exif(b"not an image").warnings == ()


def test_camera_text_is_cleaned_and_bounded() -> None:
    """Control bytes in Make/Model are dropped; the name is bounded; a make repeated in the
    model is said once."""
    facts = read_exif(mk.jpeg(mk.exif_block(camera=("Acme\x01\x02", "Acme Z\x7f9" + "x" * 400))))
    assert facts.camera is not None
    assert facts.camera.startswith("Acme Z9")
    assert len(facts.camera) <= 128
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in facts.camera)


@pytest.mark.parametrize(
    ("lat", "lon", "want"),
    [
        ("52,22.0N", "4,53.0E", (52.366667, 4.883333)),
        ("52,22,0N", "4,53,0e", (52.366667, 4.883333)),
        ("33.5S", "70.25W", (-33.5, -70.25)),
        ("-33.5", "-70.25", (-33.5, -70.25)),  # signed decimal degrees, no reference
    ],
)
def test_xmp_gps_forms(lat: str, lon: str, want) -> None:
    facts = read_exif(
        mk.jpeg_xmp_only(mk.xmp_packet(exif__GPSLatitude=lat, exif__GPSLongitude=lon))
    )
    assert facts.gps == pytest.approx(want, abs=1e-6)


def test_date_in_the_wrong_ifd_is_still_found() -> None:
    """Some writers put DateTimeOriginal in IFD0 instead of the Exif IFD."""
    exif = mk.exif_block()
    exif[0x9003] = "2015:05:05 05:05:05"
    assert read_exif(mk.jpeg(exif)).taken_at == datetime(2015, 5, 5, 5, 5, 5)


def test_broken_gps_pointer_leaves_a_warning() -> None:
    """A GPS IFD pointer into nowhere: the rest of the block is read, and the loss is said."""
    raw = bytearray(mk.exif_block(gps=GPS, taken="2020:02:02 02:02:02").tobytes())
    at = raw.find(b"\x88\x25")  # the GPS IFD pointer entry (big-endian block)
    raw[at + 8 : at + 12] = (60000).to_bytes(4, "big")
    facts = read_exif(mk.jpeg_raw_exif(bytes(raw)))
    assert facts.gps is None and facts.taken_at == datetime(2020, 2, 2, 2, 2, 2)
    assert len(facts.warnings) == 1 and "GPS IFD unreadable" in facts.warnings[0]


@pytest.mark.parametrize("cut", [20, 60, 90, 120])
def test_truncated_block_leaves_a_warning(cut: int) -> None:
    """A block cut short (a writer that died, a bad copy): whatever is readable is kept, and
    the loss is said in one line."""
    raw = mk.exif_block(gps=GPS, taken="2020:02:02 02:02:02").tobytes()
    facts = read_exif(mk.jpeg_raw_exif(raw[:cut]))
    assert facts.warnings and all("\n" not in w and w == w.strip() for w in facts.warnings)
    assert facts.gps is None
