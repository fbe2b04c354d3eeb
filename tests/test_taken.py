"""Time taken: DateTimeOriginal, then DateTimeDigitized, then DateTime, placeholders skipped,
each with its own offset."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests import exifmake as mk
from workers.exif import read_exif
from workers.taken import parse_exif_date, parse_offset

PLACEHOLDERS = [
    "0000:00:00 00:00:00",
    "    :  :     :  :  ",
    "",
    "2019:13:01 10:00:00",  # month 13
    "2019:02:30 10:00:00",  # 30 February
    "2019:01:01 25:00:00",  # hour 25
    "0001:01:01 00:00:00",  # before photography
    "9999:12:31 23:59:59",  # a camera's "no date"
    f"{datetime.now().year + 2}:01:01 00:00:00",  # not yet
    "unknown",
]


@pytest.mark.parametrize("text", PLACEHOLDERS)
def test_placeholders_are_not_dates(text: str) -> None:
    assert parse_exif_date(text) is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2003:08:17 14:22:05", datetime(2003, 8, 17, 14, 22, 5)),
        ("2003:08:17 14:22:05\x00", datetime(2003, 8, 17, 14, 22, 5)),
        ("2003-08-17 14:22:05", datetime(2003, 8, 17, 14, 22, 5)),
        ("2003:08:17 14:22", datetime(2003, 8, 17, 14, 22)),
        # a clock set ahead into next year is still a date
        (f"{datetime.now().year + 1}:01:01 00:00:00", datetime(datetime.now().year + 1, 1, 1)),
    ],
)
def test_real_dates_parse(text: str, want: datetime) -> None:
    assert parse_exif_date(text) == want


@pytest.mark.parametrize(
    ("text", "minutes"), [("+09:00", 540), ("-05:30", -330), ("+0545", 345), ("+00:00", 0)]
)
def test_offsets(text: str, minutes: int) -> None:
    tz = parse_offset(text)
    assert tz is not None and tz.utcoffset(None) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["   :  ", "", "+15:00", "+09:75", "Z9"])
def test_bad_offsets_are_none(text: str) -> None:
    assert parse_offset(text) is None


@pytest.mark.parametrize("placeholder", [None, *PLACEHOLDERS[:4]])
def test_digitized_when_original_absent_or_placeholder(placeholder) -> None:
    exif = mk.exif_block(taken=placeholder, digitized="2003:08:17 14:22:05")
    assert read_exif(mk.jpeg(exif)).taken_at == datetime(2003, 8, 17, 14, 22, 5)


def test_datetime_when_both_others_are_placeholders() -> None:
    exif = mk.exif_block(
        taken="0000:00:00 00:00:00",
        digitized="    :  :     :  :  ",
        datetime_="2011:11:11 11:11:11",
    )
    assert read_exif(mk.jpeg(exif)).taken_at == datetime(2011, 11, 11, 11, 11, 11)


def test_original_wins_over_the_others() -> None:
    exif = mk.exif_block(
        taken="2001:01:01 01:01:01",
        digitized="2002:02:02 02:02:02",
        datetime_="2003:03:03 03:03:03",
    )
    assert read_exif(mk.jpeg(exif)).taken_at == datetime(2001, 1, 1, 1, 1, 1)


@pytest.mark.parametrize(
    ("kwargs", "offset"),
    [
        (dict(taken="2020:06:01 12:00:00", offsets=("+02:00", "-07:00", "+05:00")), 120),
        (dict(digitized="2020:06:01 12:00:00", offsets=("+02:00", "-07:00", "+05:00")), -420),
        (dict(datetime_="2020:06:01 12:00:00", offsets=("+02:00", "-07:00", "+05:00")), 300),
    ],
)
def test_each_date_takes_its_own_offset(kwargs, offset: int) -> None:
    """OffsetTimeOriginal goes with the original, OffsetTimeDigitized with the digitized,
    OffsetTime with DateTime."""
    taken = read_exif(mk.jpeg(mk.exif_block(**kwargs))).taken_at
    assert taken is not None and taken.utcoffset() == timedelta(minutes=offset)
    assert (taken.hour, taken.minute) == (12, 0)


def test_no_offset_is_camera_local_time() -> None:
    taken = read_exif(mk.jpeg(mk.exif_block(taken="2020:06:01 12:00:00"))).taken_at
    assert taken == datetime(2020, 6, 1, 12, 0) and taken.tzinfo is None


def test_all_placeholders_is_no_time() -> None:
    exif = mk.exif_block(taken=PLACEHOLDERS[0], digitized=PLACEHOLDERS[1], datetime_="")
    assert read_exif(mk.jpeg(exif)).taken_at is None


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59", "1700-01-01T00:00:00Z"])
def test_xmp_dates_out_of_range_are_none(text: str) -> None:
    """XMP's dates follow the same capture-year range as EXIF's."""
    from workers.xmp import parse_xmp_date

    assert parse_xmp_date(text) is None
    assert parse_xmp_date("2003-08-17T14:22:05") == datetime(2003, 8, 17, 14, 22, 5)
