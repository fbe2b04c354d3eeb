"""Photos of each container kind with EXIF where real writers put it (for the EXIF tests).

Every builder takes a Pillow ``Image.Exif`` and returns file bytes; the field cases in
tests/fixtures/fieldcases are one file of each kind, these make more.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image
from PIL.PngImagePlugin import PngInfo

GPS_IFD, EXIF_IFD = 0x8825, 0x8769


def exif_block(
    *,
    gps: tuple[tuple, str, tuple, str] | None = None,
    taken: str | None = None,
    digitized: str | None = None,
    datetime_: str | None = None,
    offsets: tuple[str | None, str | None, str | None] = (None, None, None),
    camera: tuple[str, str] | None = ("ExampleCam", "X1"),
    orientation: int | None = None,
) -> Image.Exif:
    """An EXIF block; ``gps`` is (lat components, lat ref, lon components, lon ref)."""
    exif = Image.Exif()
    if camera:
        exif[0x010F], exif[0x0110] = camera
    if orientation:
        exif[0x0112] = orientation
    if datetime_:
        exif[0x0132] = datetime_
    sub = exif.get_ifd(EXIF_IFD)
    if taken:
        sub[0x9003] = taken
    if digitized:
        sub[0x9004] = digitized
    for tag, value in zip((0x9011, 0x9012, 0x9010), offsets):
        if value:
            sub[tag] = value
    if gps:
        g = exif.get_ifd(GPS_IFD)
        g[2], g[1], g[4], g[3] = gps
    return exif


def _image(size: tuple[int, int] = (64, 48)) -> Image.Image:
    img = Image.new("RGB", size, (90, 120, 150))
    img.paste((250, 20, 20), (0, 0, size[0] // 2, size[1] // 2))
    return img


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(exif: Image.Exif, size: tuple[int, int] = (64, 48)) -> bytes:
    return _save(_image(size), "JPEG", exif=exif, quality=90)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def jpeg_late_app1(exif: Image.Exif, filler_kb: int = 180) -> bytes:
    """A JPEG whose EXIF APP1 follows ``filler_kb`` KB of other segments: XMP, extended XMP
    chunks and a multi-segment ICC profile, as Photoshop and Lightroom write them."""
    plain = _save(_image(), "JPEG", quality=90)
    exif_app1 = _segment(0xE1, b"Exif\x00\x00" + exif.tobytes())
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    segments = [_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp)]
    chunk = 60_000
    n = max(1, filler_kb * 1024 // (2 * chunk))
    for i in range(n):  # extended XMP: GUID, full length, offset, data
        head = b"http://ns.adobe.com/xmp/extension/\x00" + b"0" * 32
        segments.append(
            _segment(0xE1, head + struct.pack(">II", n * chunk, i * chunk) + b" " * chunk)
        )
    for i in range(n):  # ICC_PROFILE chunks (a made-up profile body: Pillow only joins them)
        segments.append(_segment(0xE2, b"ICC_PROFILE\x00" + bytes([i + 1, n]) + b"\x00" * chunk))
    # SOI, the filler, then the EXIF APP1, then the rest of the plain file after SOI.
    return plain[:2] + b"".join(segments) + exif_app1 + plain[2:]


def png_exif_chunk(exif: Image.Exif) -> bytes:
    """PNG with a standard ``eXIf`` chunk (PNG 1.2 extension, 2017)."""
    return _save(_image(), "PNG", exif=exif)


def png_raw_profile(exif: Image.Exif, *, compressed: bool = True) -> bytes:
    """PNG with EXIF in a "Raw profile type exif" zTXt (or tEXt) chunk, as ImageMagick and
    exiftool write it: "\\nexif\\n<length>\\n<hex, 72 per line>\\n"."""
    raw = b"Exif\x00\x00" + exif.tobytes()
    hexed = raw.hex()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    info = PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw):8d}\n{lines}\n", zip=compressed)
    return _save(_image(), "PNG", pnginfo=info)


def webp(exif: Image.Exif) -> bytes:
    return _save(_image(), "WEBP", exif=exif, lossless=True)


def tiff(exif: Image.Exif) -> bytes:
    return _save(_image(), "TIFF", exif=exif)


def heic(exif: Image.Exif, *, brand: bytes | None = None) -> bytes:
    """HEIC written by libheif (pillow-heif); ``brand`` rewrites the ftyp major brand (e.g.
    b"heix", which 10-bit and 4:2:2 encoders write)."""
    data = bytearray(_save(_image(), "HEIF", exif=exif.tobytes(), quality=90))
    if brand:
        assert data[4:8] == b"ftyp"
        data[8:12] = brand
    return bytes(data)


def xmp_packet(**props: str) -> bytes:
    """An XMP packet with the given properties as ``prefix:Name="value"`` attributes."""
    attrs = " ".join(f'{k.replace("__", ":")}="{v}"' for k, v in props.items())
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        f'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" {attrs}/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def jpeg_xmp_only(packet: bytes) -> bytes:
    plain = _save(_image(), "JPEG", quality=90)
    return plain[:2] + _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet) + plain[2:]


def png_xmp_only(packet: bytes) -> bytes:
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode())
    return _save(_image(), "PNG", pnginfo=info)


def jpeg_broken_exif() -> bytes:
    """A JPEG whose APP1 says "Exif" but holds no TIFF header a reader can follow."""
    plain = _save(_image(), "JPEG", quality=90)
    return plain[:2] + _segment(0xE1, b"Exif\x00\x00" + b"\x13\x37" * 40) + plain[2:]


def png_16bit(arr_u16, colour_type: int = 0) -> bytes:
    """A 16-bit PNG written chunk by chunk (grey: type 0, RGB: 2, RGBA: 6)."""
    h, w = arr_u16.shape[:2]
    raw = b"".join(b"\x00" + arr_u16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def tiff_16bit_rgb(arr_u16, *, alpha: bool = False, big_endian: bool = False) -> bytes:
    """An uncompressed 48-bit RGB (or 64-bit RGBA) TIFF written field by field (Pillow cannot
    write one)."""
    h, w, c = arr_u16.shape
    e = ">" if big_endian else "<"
    data = arr_u16.astype(e + "u2").tobytes()
    # (tag, type, count, value): width, height, bits, no compression, RGB, strip offset,
    # samples per pixel, rows per strip, strip bytes
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, c, None), (259, 3, 1, 1),
               (262, 3, 1, 2), (273, 4, 1, None), (277, 3, 1, c), (278, 3, 1, h),
               (279, 4, 1, len(data))]  # fmt: skip
    if alpha:
        entries.append((338, 3, 1, 2))  # ExtraSamples: unassociated alpha
    ifd_at = 8
    bps_at = ifd_at + 2 + 12 * len(entries) + 4
    data_at = bps_at + 2 * c
    out = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, ifd_at)
    out += struct.pack(e + "H", len(entries))
    for tag, kind, count, value in entries:
        if tag in (258, 273):
            out += struct.pack(e + "HHII", tag, kind, count, bps_at if tag == 258 else data_at)
        elif kind == 3:
            out += struct.pack(e + "HHIHH", tag, kind, count, value, 0)
        else:
            out += struct.pack(e + "HHII", tag, kind, count, value)
    return out + struct.pack(e + "I", 0) + struct.pack(e + f"{c}H", *([16] * c)) + data


def png_raw_profile_app1(exif: Image.Exif) -> bytes:
    """PNG with EXIF in a "Raw profile type APP1" chunk (older ImageMagick): the APP1 payload
    ("Exif\\0\\0" + TIFF) in the same hex form."""
    raw = b"Exif\x00\x00" + exif.tobytes()
    hexed = raw.hex()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    info = PngInfo()
    info.add_text("Raw profile type APP1", f"\nAPP1\n{len(raw):8d}\n{lines}\n", zip=True)
    return _save(_image(), "PNG", pnginfo=info)


def jpeg_raw_exif(block: bytes) -> bytes:
    """A JPEG carrying ``block`` ("Exif\\0\\0" + TIFF) byte for byte, as no writer rewrites it."""
    plain = _save(_image(), "JPEG", quality=90)
    return plain[:2] + _segment(0xE1, block) + plain[2:]


def avif(exif: Image.Exif) -> bytes:
    return _save(_image(), "AVIF", exif=exif.tobytes(), quality=90)
