"""GPS as cameras write it: one test per rule in workers/gps.py's docstring."""

from __future__ import annotations

import pytest
from PIL.TiffImagePlugin import IFDRational as R

from tests import exifmake as mk
from workers.exif import read_exif
from workers.gps import gps_from_ifd


def _ifd(lat, lon, lat_ref="N", lon_ref="E", **more) -> dict:
    ifd = {2: lat, 4: lon}
    if lat_ref is not None:
        ifd[1] = lat_ref
    if lon_ref is not None:
        ifd[3] = lon_ref
    ifd.update({int(k[1:]): v for k, v in more.items()})
    return ifd


AMS = (R(52), R(22), R(0, 0)), (R(4), R(53), R(0, 0))


def test_rule1_both_coordinates_needed() -> None:
    assert gps_from_ifd({2: (R(52), R(0), R(0)), 1: "N"}) is None
    assert gps_from_ifd({4: (R(4), R(0), R(0)), 3: "E"}) is None


def test_rule2_status_void_is_no_fix() -> None:
    assert gps_from_ifd(_ifd(*AMS, t9="V")) is None
    assert gps_from_ifd(_ifd(*AMS, t9="A")) == pytest.approx((52.366667, 4.883333), abs=1e-6)


@pytest.mark.parametrize(
    ("lat", "want"),
    [
        ((R(52), R(22), R(30)), 52.375),  # D, M, S
        ((R(52), R(2235, 100)), 52.3725),  # D, decimal minutes
        ((R(52375, 1000),), 52.375),  # one rational: decimal degrees
        (R(52375, 1000), 52.375),  # a bare rational, not a tuple
        (52.375, 52.375),  # a float (decimal-degree writers)
    ],
)
def test_rule3_one_two_or_three_components(lat, want: float) -> None:
    assert gps_from_ifd(_ifd(lat, (R(4), R(0), R(0))))[0] == pytest.approx(want)


def test_rule3_more_than_three_components_is_no_fix() -> None:
    assert gps_from_ifd(_ifd((R(52), R(1), R(1), R(1)), (R(4),))) is None


@pytest.mark.parametrize(
    ("lat", "want"),
    [
        ((R(52), R(22), R(0, 0)), 52.366667),  # undefined seconds count as 0
        ((R(52), R(0, 0), R(0, 0)), 52.0),  # undefined minutes and seconds
        ((R(52), R(22), R(5, 0)), 52.366667),  # n/0 is undefined too
        ((R(52), R(0, 0), R(36)), 52.01),  # undefined minutes, real seconds
    ],
)
def test_rule4_undefined_minutes_or_seconds_count_as_zero(lat, want: float) -> None:
    assert gps_from_ifd(_ifd(lat, (R(4), R(53), R(0, 0))))[0] == pytest.approx(want, abs=1e-6)


def test_rule4_undefined_degrees_is_no_fix() -> None:
    assert gps_from_ifd(_ifd((R(0, 0), R(22), R(0)), (R(4), R(53), R(0)))) is None
    assert gps_from_ifd(_ifd((R(52), R(22), R(0)), (R(7, 0),))) is None


@pytest.mark.parametrize(
    "lat",
    [
        (R(52), R(61), R(0)),  # minutes beyond 60
        (R(52), R(0), R(75)),  # seconds beyond 60
        (R(52), R(-5), R(0)),  # negative minutes
        (R(-52), R(5), R(0)),  # negative degrees with minutes
        ("52", "22", "0"),  # not numbers
    ],
)
def test_rule5_minutes_and_seconds_out_of_range_is_no_fix(lat) -> None:
    assert gps_from_ifd(_ifd(lat, (R(4), R(53), R(0)))) is None


def test_rule5_sixty_seconds_is_tolerated() -> None:
    assert gps_from_ifd(_ifd((R(52), R(21), R(60)), (R(4), R(0), R(0))))[0] == pytest.approx(
        52.366667, abs=1e-6
    )


@pytest.mark.parametrize(
    ("lat_ref", "lon_ref", "lat", "lon", "want"),
    [
        ("S", "W", (R(33), R(30), R(0)), (R(70), R(15), R(0)), (-33.5, -70.25)),
        ("s", "w", (R(33), R(30), R(0)), (R(70), R(15), R(0)), (-33.5, -70.25)),  # lower case
        (" S\x00", b"W", (R(33), R(30), R(0)), (R(70), R(15), R(0)), (-33.5, -70.25)),
        (None, None, (R(33), R(30), R(0)), (R(70), R(15), R(0)), (33.5, 70.25)),  # missing
        (None, None, -33.5, -70.25, (-33.5, -70.25)),  # signed decimal degrees, no ref
        ("N", "E", -33.5, -70.25, (33.5, 70.25)),  # a reference overrides the sign
        ("?", "", (R(33), R(30), R(0)), (R(70), R(15), R(0)), (33.5, 70.25)),  # unreadable
    ],
)
def test_rule6_references(lat_ref, lon_ref, lat, lon, want) -> None:
    assert gps_from_ifd(_ifd(lat, lon, lat_ref, lon_ref)) == pytest.approx(want)


def test_rule6_reference_of_the_other_axis_is_no_fix() -> None:
    assert gps_from_ifd(_ifd((R(33),), (R(70),), "E", "E")) is None
    assert gps_from_ifd(_ifd((R(33),), (R(70),), "N", "N")) is None


@pytest.mark.parametrize(
    ("lat", "lon"),
    [((R(95),), (R(10),)), ((R(45),), (R(190),)), (float("inf"), 10.0), (float("nan"), 1.0)],
)
def test_rule7_out_of_range_or_not_finite_is_no_fix(lat, lon) -> None:
    assert gps_from_ifd(_ifd(lat, lon)) is None


def test_rule8_zero_zero_is_no_fix() -> None:
    assert gps_from_ifd(_ifd((R(0), R(0), R(0)), (R(0), R(0), R(0)))) is None
    # zero on one axis only is a real place (the equator, the prime meridian)
    assert gps_from_ifd(_ifd((R(0),), (R(32), R(30)))) == pytest.approx((0.0, 32.5))


@pytest.mark.parametrize(
    ("lat", "lon", "want"),
    [
        (AMS[0], AMS[1], (52.366667, 4.883333)),
        ((R(52375, 1000),), (R(4885, 1000),), (52.375, 4.885)),
    ],
)
def test_rules_hold_through_a_written_jpeg(lat, lon, want) -> None:
    """The same rules on a JPEG Pillow wrote (rationals as stored in the file)."""
    data = mk.jpeg(mk.exif_block(gps=(lat, "N", lon, "E")))
    assert read_exif(data).gps == pytest.approx(want, abs=1e-6)
