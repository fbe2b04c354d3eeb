"""A generated corpus of bad photos and bad events, each with the reason it must be refused
(or the fact that it must still be accepted): the fixed half of the bad-input tests."""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, TiffImagePlugin

from sightline.samples import synthetic_jpeg

GPS_IFD, EXIF_IFD = 0x8825, 0x8769


@dataclass(frozen=True)
class BadPhoto:
    name: str
    data: bytes
    refusal: str | None  # a regex the PhotoError must match; None: it decodes


def small_image(fmt: str, *, mode: str = "RGB", size: tuple[int, int] = (48, 36)) -> bytes:
    """A small generated photo in ``fmt`` (the bases the fuzzers mutate)."""
    if fmt == "JPEG":
        return synthetic_jpeg(
            width=size[0],
            height=size[1],
            seed=7,
            gps=(48.85837, 2.29448),
            taken_at="2024:05:01 10:15:00",
            offset="+02:00",
            orientation=6,
        )
    img = Image.frombytes("RGB", size, bytes(range(256)) * (size[0] * size[1] * 3 // 256 + 1))
    buf = io.BytesIO()
    img.convert(mode).save(buf, fmt)
    return buf.getvalue()


def _jpeg_with_exif(gps: dict | None = None, sub: dict | None = None, top: dict | None = None):
    exif = Image.Exif()
    for tag, value in (top or {}).items():
        exif[tag] = value
    if gps:
        ifd = exif.get_ifd(GPS_IFD)
        for tag, value in gps.items():
            ifd[tag] = value
    if sub:
        ifd = exif.get_ifd(EXIF_IFD)
        for tag, value in sub.items():
            ifd[tag] = value
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 120, 150)).save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def _gps(lat: tuple, lon: tuple) -> bytes:
    return _jpeg_with_exif({1: "N", 2: lat, 3: "E", 4: lon})


def _taken(when: str, offset: str) -> bytes:
    return _jpeg_with_exif(sub={0x9003: when, 0x9011: offset})


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def photo_corpus() -> list[BadPhoto]:
    """Bad and odd photos, generated: what each must come to."""
    jpeg = small_image("JPEG")
    zero = TiffImagePlugin.IFDRational(1, 0)
    return [
        BadPhoto("empty", b"", "empty file"),
        BadPhoto("text named .jpg", b"<html>not a photo</html>", "not an image"),
        BadPhoto("jpeg header only", jpeg[:20], "not an image|corrupt or truncated"),
        BadPhoto("jpeg cut in half", jpeg[: len(jpeg) // 2], "corrupt or truncated"),
        BadPhoto("jpeg without its last bytes", jpeg[:-40], "corrupt or truncated"),
        BadPhoto("png cut short", small_image("PNG")[:60], "corrupt or truncated"),
        BadPhoto("gif cut short", small_image("GIF")[:40], "corrupt or truncated|not an image"),
        BadPhoto("webp cut short", small_image("WEBP")[:30], "corrupt or truncated|not an image"),
        BadPhoto("png bomb 60000x60000", _png_declaring(60_000, 60_000), "image too large"),
        BadPhoto("png 0x0", _png_declaring(0, 0), "not an image|corrupt|no pixels"),
        BadPhoto("exif gps zero denominator", _gps((zero, 1.0, 2.0), (2.0, 3.0, 4.0)), None),
        BadPhoto("exif latitude 95", _gps((95.0, 0.0, 0.0), (2.0, 0.0, 0.0)), None),
        BadPhoto("exif gps of five numbers", _gps((1.0, 2.0, 3.0, 4.0, 5.0), (2.0, 3.0)), None),
        BadPhoto("exif huge time offset", _taken("2024:01:01 10:00:00", "+99999999999:00"), None),
        BadPhoto("exif bad date", _taken("2024:13:45 99:99:99", "+1:2:3"), None),
        BadPhoto("exif orientation 99", _jpeg_with_exif(top={0x0112: 99}), None),
        BadPhoto("exif orientation 0", _jpeg_with_exif(top={0x0112: 0}), None),
    ]  # fmt: skip


def event_corpus() -> list[tuple[str, dict, str]]:
    """Events the handler must refuse, each with (a regex of) its one-line reason."""
    rec = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "photos"}, "object": {"key": "users/a/x.jpg", "size": 5}},
    }

    def sqs(body: object) -> dict:
        return {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": body}]}

    def with_obj(**obj: object) -> dict:
        return {"Records": [{**rec, "s3": {**rec["s3"], "object": obj}}]}

    def at(when: str) -> dict:
        return {"Records": [{**rec, "eventTime": when}]}

    sns = {"TopicArn": "t", "Message": "<xml/>"}
    eventbridge = {"detail-type": "Object Created", "source": "evil", "detail": {}}
    deep = "[" * 100_000 + "]" * 100_000  # under SQS's 256 KiB; too deep for json
    return [
        ("empty object", {}, "not a known event envelope"),
        ("empty Records", {"Records": []}, "empty 'Records'"),
        ("record not an object", {"Records": [17]}, "not a JSON object"),
        ("neither S3 nor SNS", {"Records": [{"foo": 1}]}, "neither an S3 nor an SNS"),
        ("no eventName", {"Records": [{"s3": rec["s3"]}]}, "no eventName"),
        ("s3 not an object", {"Records": [{**rec, "s3": []}]}, "'s3' is not a JSON object"),
        ("no bucket", {"Records": [{**rec, "s3": {"object": {"key": "k"}}}]}, "s3.bucket"),
        ("no key", with_obj(size=5), "no object key"),
        ("size a word", with_obj(key="a.jpg", size="big"), "size is not a number"),
        ("size a float", with_obj(key="a.jpg", size=1.5), "size is not a number"),
        ("key past 1024 bytes", with_obj(key="users/a/" + "é" * 510 + ".jpg"), "longer than S3"),
        ("size negative", with_obj(key="a.jpg", size=-5), "a.jpg'?: object size is not a byte"),
        ("size negative text", with_obj(key="a.jpg", size="-5"), "size is not a number"),
        ("size with underscore", with_obj(key="a.jpg", size="1_000"), "size is not a number"),
        ("size with space", with_obj(key="a.jpg", size=" 5"), "size is not a number"),
        ("size in other digits", with_obj(key="a.jpg", size="\u0661"), "size is not a number"),
        ("size past bigint", with_obj(key="a.jpg", size=2**63), "size is not a byte count"),
        ("time a week date", at("2024-W18-3T08:15:00Z"), "not an RFC 3339 time"),
        ("time comma fraction", at("2024-05-01T08:15:00,5Z"), "not an RFC 3339 time"),
        ("time hour only", at("2024-05-01T08Z"), "not an RFC 3339 time"),
        ("time offset 23:59", at("2024-05-01T08:15:00+23:59"), "offset past 15:59"),
        ("time month 13", at("2024-13-01T08:15:00Z"), "not a real date and time"),
        ("time a word", at("yesterday"), "not an RFC 3339 time"),
        ("time lower case", at("2024-05-01t08:15:00z"), "not an RFC 3339 time"),
        ("time past 9999 in UTC", at("9999-12-31T23:59:59-15:00"), "years 1 to 9999"),
        ("time rounds past 9999", at("9999-12-31T23:59:59.9999999Z"), "years 1 to 9999"),
        ("size of 5000 digits", with_obj(key="a.jpg", size="9" * 5000), "not a byte count"),
        ("key not UTF-8", with_obj(key="users/a/%FF%FE.jpg", size=1), "not UTF-8"),
        ("SQS body not JSON", sqs("{nope"), "SQS body is not JSON"),
        ("SQS body not text", sqs({"Records": []}), "SQS body is not a string"),
        ("SNS message not JSON", sqs(json.dumps(sns)), "SNS Message is not JSON"),
        ("SQS body nested too deep", sqs(deep), "SQS body .*too deep"),
        ("SNS message too deep", sqs(json.dumps({**sns, "Message": deep})), "SNS .*too deep"),
        ("SNS Type not text", {"Records": [{"EventSource": "aws:sns",
         "Sns": {**sns, "Type": [1]}}]}, "SNS Type is not a message type: \\[1\\]"),
        ("SNS Type unknown", sqs(json.dumps({**sns, "Type": "Notice"})), 'type: "Notice"'),
        ("EventBridge from elsewhere", eventbridge, "not aws.s3"),
        ("nested too deep", _nested_sns(8), "nested too deep"),
    ]  # fmt: skip


def _nested_sns(depth: int) -> dict:
    inner: dict = {"Records": []}
    for _ in range(depth):
        inner = {"TopicArn": "t", "Message": json.dumps(inner)}
    return inner
