"""Property-based fuzzing (hypothesis) of the three parsers that read untrusted bytes: EXIF and
GPS, image decoding, upload events. No crash (only the documented error types), no hang (a
deadline per example), a one-line reason for every refusal.

Seeded by default (the same examples on every run, CI included); set
SIGHTLINE_FUZZ_EXPLORE=1 for fresh random examples, SIGHTLINE_FUZZ_EXAMPLES=N for more.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL.TiffImagePlugin import IFDRational

from handlers.core import plan
from handlers.rules import OwnerRule
from tests.badinput import small_image
from workers.exif import ExifFacts, read_exif
from workers.gps import gps_from_ifd
from workers.photos import PhotoError, decode

EXPLORE = os.environ.get("SIGHTLINE_FUZZ_EXPLORE") == "1"


def fuzz(examples: int, deadline_ms: int) -> settings:
    """Modest example counts (the suite runs on 2 shared cores), a deadline per example."""
    return settings(
        max_examples=int(os.environ.get("SIGHTLINE_FUZZ_EXAMPLES") or examples),
        deadline=timedelta(milliseconds=deadline_ms),
        derandomize=not EXPLORE,
        database=None,  # nothing written into the checkout
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


pytestmark = [
    pytest.mark.timeout(300),  # a parser that hangs fails the run instead of holding it
    pytest.mark.filterwarnings("ignore::UserWarning"),  # Pillow warns on every odd EXIF tag
]

BASES = {fmt: small_image(fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP")}
EXIF_END = BASES["JPEG"].index(b"\xff\xdb")  # SOI + APP1 (EXIF) come before the first DQT


@st.composite
def mutated(draw: st.DrawFn, base: bytes, head: int | None = None) -> bytes:
    """``base`` with a few byte flips, overwrites, cuts, inserts or repeats; positions mostly in
    the first ``head`` bytes (headers, where parsers branch)."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        top = min(len(data), head or 512) if draw(st.integers(0, 3)) else len(data)
        pos = draw(st.integers(0, max(0, top - 1)))
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "repeat", "truncate"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE]))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
        else:
            del data[pos:]
    return bytes(data)


def _check_facts(facts: ExifFacts) -> None:
    assert isinstance(facts, ExifFacts)
    if facts.gps is not None:
        lat, lon = facts.gps
        assert -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0)
        assert math.isfinite(lat) and math.isfinite(lon)
    assert facts.taken_at is None or isinstance(facts.taken_at, datetime)
    assert facts.camera is None or isinstance(facts.camera, str)
    assert 1 <= facts.orientation <= 8


# ------------------------------------------------------------------ EXIF and GPS


@fuzz(250, 2000)
@given(mutated(BASES["JPEG"], head=EXIF_END))
def test_read_exif_on_mutated_real_exif(data: bytes) -> None:
    """Mutated EXIF (GPS, time, offset, orientation, camera) never raises; facts stay sane."""
    _check_facts(read_exif(data))


@fuzz(200, 2000)
@given(st.binary(max_size=2048) | st.binary(max_size=512).map(lambda b: b"\xff\xd8\xff\xe1" + b))
def test_read_exif_on_arbitrary_bytes(data: bytes) -> None:
    """Any bytes, with or without a JPEG/APP1 prefix, give (possibly empty) facts."""
    _check_facts(read_exif(data))


_NUMBER = st.one_of(
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(IFDRational, st.integers(-(2**32), 2**32), st.integers(-3, 2**32)),
    st.tuples(st.integers(-(2**32), 2**32), st.integers(-3, 2**32)),
    st.text(max_size=4),
    st.none(),
)
_REF = st.one_of(st.none(), st.text(max_size=3), st.binary(max_size=3), st.integers())


@fuzz(300, 1000)
@given(
    st.lists(_NUMBER, max_size=5).map(tuple) | _NUMBER,
    _REF,
    st.lists(_NUMBER, max_size=5).map(tuple) | _NUMBER,
    _REF,
    _REF,
)
def test_gps_from_ifd_on_arbitrary_tag_values(lat, lat_ref, lon, lon_ref, status) -> None:
    """gps_from_ifd gives None or an in-range, finite, non-(0,0) position for any values."""
    ifd = {2: lat, 4: lon}
    for tag, value in ((1, lat_ref), (3, lon_ref), (9, status)):
        if value is not None:
            ifd[tag] = value
    gps = gps_from_ifd(ifd)
    if gps is not None:
        assert -90 <= gps[0] <= 90 and -180 <= gps[1] <= 180 and gps != (0.0, 0.0)


# ------------------------------------------------------------------ image decoding


def _decode_or_refuse(data: bytes) -> None:
    try:
        photo = decode(data, resize=73, crop=64, max_pixels=20_000_000)
    except PhotoError as exc:
        reason = str(exc)
        assert reason and "\n" not in reason
        return
    assert photo.crop.shape == (64, 64, 3) and photo.crop.dtype.name == "uint8"
    assert photo.width > 0 and photo.height > 0 and 1 <= photo.orientation <= 8


@pytest.mark.parametrize("fmt", sorted(BASES))
@fuzz(200, 5000)
@given(data=st.data())
def test_decode_on_mutated_images(fmt: str, data: st.DataObject) -> None:
    """Mutated JPEG, PNG, GIF and WebP bytes decode to an RGB crop or raise PhotoError with
    a one-line reason; nothing else escapes."""
    _decode_or_refuse(data.draw(mutated(BASES[fmt], head=256)))


@fuzz(200, 5000)
@given(st.binary(max_size=4096))
def test_decode_on_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes are refused with a PhotoError (or, rarely, decode)."""
    _decode_or_refuse(data)


# ------------------------------------------------------------------ events

FIXTURES = Path(__file__).parent / "fixtures" / "events"
ENVELOPES = [json.loads(p.read_text("utf-8")) for p in sorted(FIXTURES.glob("*.json"))]
OWNERS = OwnerRule()

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
# Keys the envelopes use, so arbitrary objects reach deep into the parsers.
ENVELOPE_KEYS = st.sampled_from(
    ["Records", "s3", "bucket", "object", "key", "name", "size", "eventName", "eventSource",
     "body", "messageId", "Sns", "Message", "TopicArn", "Type", "detail-type", "detail",
     "source", "sequencer", "versionId", "eTag", "EventName", "Key", "Event", "eventTime"]
)  # fmt: skip
SHAPED = st.recursive(
    st.none() | st.integers() | st.text(max_size=20) | JSON,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ENVELOPE_KEYS, inner, max_size=5),
    max_leaves=25,
)


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _replace(value: Any, path: tuple, new: Any, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replace(copy[head], rest, new, delete)
    return copy


def _decode_bodies(value: Any) -> Any:
    """SQS bodies and SNS messages as parsed JSON, so mutations reach inside them."""
    if isinstance(value, dict):
        out = {k: _decode_bodies(v) for k, v in value.items()}
        for k in ("body", "Message"):
            if isinstance(out.get(k), str):
                with contextlib.suppress(ValueError):
                    out[k] = {"__json__": _decode_bodies(json.loads(out[k]))}
        return out
    if isinstance(value, list):
        return [_decode_bodies(v) for v in value]
    return value


def _encode_bodies(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__json__"}:
            return json.dumps(_encode_bodies(value["__json__"]))
        return {k: _encode_bodies(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode_bodies(v) for v in value]
    return value


@st.composite
def mutated_envelope(draw: st.DrawFn) -> dict:
    """A real envelope (fixtures) with 1-4 values replaced or keys dropped, nested bodies too."""
    event = _decode_bodies(draw(st.sampled_from(ENVELOPES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(event) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        event = _replace(event, path, draw(SHAPED), delete=draw(st.booleans()))
    event = _encode_bodies(event)
    return event if isinstance(event, dict) else {"Records": event}


def _check_plan(event: dict) -> None:
    actions = plan(event, OWNERS)
    assert actions, "every invocation yields at least one action (or error)"
    for a in actions:
        assert a.action in {"tag", "delete", "ignore", "error"}
        if a.action in {"error", "ignore"}:
            assert isinstance(a.reason, str) and a.reason.strip(), a.to_json()
            assert "\n" not in a.reason and "\r" not in a.reason, a.reason
        else:
            task = a.task()
            assert isinstance(task["bucket"], str) and task["bucket"]
            assert isinstance(task["key"], str) and task["key"]
            assert isinstance(task["owner"], str) and task["owner"]
            assert task["size"] is None or isinstance(task["size"], int)
            json.dumps(task)  # the task travels as JSON
        json.dumps(a.to_json(), ensure_ascii=False)


@fuzz(300, 1000)
@given(mutated_envelope())
def test_plan_on_mutated_real_envelopes(event: dict) -> None:
    """Mutated S3, SQS, SNS, EventBridge and MinIO envelopes give actions, never a crash;
    every refusal carries a one-line reason and every task is valid JSON of the contract."""
    _check_plan(event)


@fuzz(300, 1000)
@given(st.dictionaries(ENVELOPE_KEYS | st.text(max_size=8), SHAPED, max_size=5))
def test_plan_on_arbitrary_json_objects(event: dict) -> None:
    """Arbitrary JSON objects (with the envelopes' keys) are planned without a crash."""
    _check_plan(event)
