"""`sightline inspect PHOTO --save-input FILE.png`: the exact network input, as a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import exifmake as mk
from tests.support import run_cli
from workers.photos import decode

FIELD = Path(__file__).parent / "fixtures" / "fieldcases"
TINY = {"SIGHTLINE_ARCH": "tiny"}  # the tiny network's input: resize 73, crop 64


def _inspect(photo: Path, out: Path) -> dict:
    done = run_cli("inspect", str(photo), "--json", "--save-input", str(out), env=TINY)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_saved_input_is_the_crop_the_network_gets(tmp_path: Path) -> None:
    """An 8-bit RGB PNG equal, pixel for pixel, to the worker's decode for that network,
    after orientation (8 here: the photo is turned) and colour conversion."""
    photo = tmp_path / "p.webp"
    photo.write_bytes(mk.webp(mk.exif_block(orientation=8)))
    out = tmp_path / "input.png"
    report = _inspect(photo, out)
    assert report["input"] == {"path": str(out), "width": 64, "height": 64}
    saved = Image.open(out)
    assert (saved.format, saved.mode, saved.size) == ("PNG", "RGB", (64, 64))
    want = decode(photo.read_bytes(), resize=73, crop=64).crop
    assert np.array_equal(np.asarray(saved), want)


@pytest.mark.slow
def test_saved_input_of_the_16bit_scan_matches_its_8bit_twin(tmp_path: Path) -> None:
    deep = _inspect(FIELD / "04_png_16bit_grey_dim_scan.png", tmp_path / "a.png")
    ref = _inspect(FIELD / "04b_reference_same_scan_8bit.png", tmp_path / "b.png")
    a, b = (
        np.asarray(Image.open(deep["input"]["path"])),
        np.asarray(Image.open(ref["input"]["path"])),
    )
    assert np.array_equal(a, b) and abs(a.mean() - 40) < 1


@pytest.mark.slow
def test_unwritable_input_path_is_a_one_line_error(tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(mk.jpeg(mk.exif_block()))
    done = run_cli("inspect", str(photo), "--save-input", str(tmp_path / "no" / "x.png"), env=TINY)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "cannot write" in done.stderr


@pytest.mark.slow
def test_a_file_that_is_no_photo_file_is_refused_in_one_line(tmp_path: Path) -> None:
    """inspect, tag and embed read a photo with the worker's cap on an object: a FIFO (it
    blocked), a device (/dev/zero grew to 22 GB) and a file over SIGHTLINE_MAX_OBJECT_BYTES
    (it was read whole) each get one line and exit status 2, and nothing is read."""
    import os

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    big = tmp_path / "big.jpg"
    big.write_bytes(mk.jpeg(mk.exif_block(camera=("Acme", "Z9"))) + b"\0" * 4096)
    env = {**TINY, "SIGHTLINE_MAX_OBJECT_BYTES": "4096"}
    cases = [
        (fifo, "not a regular file"),
        (Path("/dev/zero"), "not a regular file"),
        (big, f"{big.stat().st_size} bytes exceeds SIGHTLINE_MAX_OBJECT_BYTES (4096)"),
    ]
    for path, reason in cases:
        done = run_cli("inspect", str(path), env=env, timeout=60)
        assert done.returncode == 2, (path, done.stderr)
        assert done.stderr.strip().splitlines() == [
            f"sightline: error: {path}: cannot read: {reason}"
        ]
    embed = run_cli("embed", str(big), "--out", str(tmp_path / "e.npy"),
                    env={**env, "SIGHTLINE_ALLOW_UNTRAINED": "1"}, timeout=120)  # fmt: skip
    assert embed.returncode != 0 and "exceeds SIGHTLINE_MAX_OBJECT_BYTES" in embed.stderr
    assert not (tmp_path / "e.npy").exists()
