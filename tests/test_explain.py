"""Class activation maps: exact decompositions of the scores, and `sightline explain` PNGs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from models.cam import embedding_cam, scene_cam
from models.checkpoint import load_checkpoint, untrained
from models.scenes import load_categories
from models.training import train_scene
from tests.support import run_cli

UNTRAINED = {"SIGHTLINE_ALLOW_UNTRAINED": "1", "SIGHTLINE_ARCH": "tiny", "SIGHTLINE_WEIGHTS": ""}
WARN_RED = np.array([255, 60, 60])


@pytest.fixture(scope="module")
def net():
    model, _ = untrained(arch="tiny", categories=load_categories(), embedding_dim=16)
    torch.manual_seed(3)
    with torch.no_grad():  # BN statistics that are not the identity, so the test means more
        model.embed_bn.running_mean.normal_()
        model.embed_bn.running_var.uniform_(0.5, 2.0)
        model.embed_bn.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_scene_cam_mean_plus_bias_is_the_class_logit(net):
    """Averaging the scene CAM over positions and adding the bias gives the logit."""
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        shared = net.trunk(x)
        logits, _ = net(x)
    classes = torch.tensor([7, 200])
    cams = scene_cam(net, shared, classes)
    got = cams.mean(dim=(1, 2)) + net.scene_fc.bias[classes]
    torch.testing.assert_close(got, logits[[0, 1], classes], rtol=1e-4, atol=1e-4)


def test_embedding_cam_explains_the_similarity_to_a_direction(net):
    """The landmark map's mean differs between photos exactly as their (pre-L2) similarity."""
    x = torch.randn(2, 3, 64, 96)
    d = F.normalize(torch.randn(1, 16), dim=1)
    with torch.no_grad():
        shared = net.trunk(x)
        feats = net.embed_features(shared)
    cams = embedding_cam(net, shared, d.expand(2, -1))
    sims = feats @ d[0]
    torch.testing.assert_close(
        cams[0].mean() - cams[1].mean(), sims[0] - sims[1], rtol=1e-4, atol=1e-4
    )


def _rotated_jpeg(path: Path) -> Path:
    """A 150x100 JPEG whose EXIF orientation (6) shows it as 100x150."""
    arr = np.zeros((100, 150, 3), np.uint8)
    arr[:, :75] = (20, 140, 30)
    arr[:, 75:] = (200, 180, 120)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif)
    path.write_bytes(buf.getvalue())
    return path


def _red_caption_pixels(png: Path) -> int:
    arr = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(arr - WARN_RED).sum(axis=2) < 40).sum())


@pytest.mark.slow
def test_explain_untrained_writes_photo_sized_pngs_that_say_untrained(tmp_path: Path):
    """Both maps are PNGs the size of the photo as shown (EXIF applied) and carry the warning."""
    photo = _rotated_jpeg(tmp_path / "p.jpg")
    out = tmp_path / "cam.png"
    proc = run_cli("explain", str(photo), "--out", str(out), "--json", env=UNTRAINED)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trained"] is False and summary["size"] == [100, 150]
    assert summary["landmark_map_of"].startswith("the photo's own embedding")
    for png in (out, tmp_path / "cam.landmark.png"):
        img = Image.open(png)
        assert img.format == "PNG" and img.size == (100, 150)
        assert _red_caption_pixels(png) > 20


@pytest.fixture(scope="module")
def trained_export(tmp_path_factory) -> Path:
    """A tiny scene network trained on plain-colour classes (beach sand, forest green, ...)."""
    from test_training import _scene_cfg, make_places

    root = tmp_path_factory.mktemp("explain")
    data = make_places(root / "places", train=6, val=1)
    return train_scene(_scene_cfg(data, root / "run", epochs=6), log=lambda _: None).export


def test_scene_cam_of_a_trained_network_lights_up_where_its_class_is(trained_export):
    """On a half-forest, half-sand photo, beach's CAM is higher on the sand, forest_path's on
    the green."""
    net, meta = load_checkpoint(trained_export)
    arr = np.zeros((64, 128, 3), np.float32)
    arr[:, :64] = (30, 120, 40)
    arr[:, 64:] = (230, 200, 120)
    x = torch.from_numpy(arr / 255.0).permute(2, 0, 1)[None]
    t = meta.transform
    x = (x - torch.tensor(t.mean).view(1, 3, 1, 1)) / torch.tensor(t.std).view(1, 3, 1, 1)
    idx = {c: i for i, c in enumerate(meta.categories)}
    with torch.no_grad():
        shared = net.trunk(x.float())
    cams = scene_cam(
        net, shared.expand(2, -1, -1, -1), torch.tensor([idx["beach"], idx["forest_path"]])
    )
    half = cams.shape[2] // 2
    left, right = cams[:, :, :half].mean(dim=(1, 2)), cams[:, :, half:].mean(dim=(1, 2))
    assert right[0] > left[0] and left[1] > right[1]


@pytest.mark.slow
def test_explain_with_trained_weights_and_centroids_names_the_best_centroid(
    tmp_path: Path, trained_export: Path
):
    """With a trained scene head the scene map has no warning; the landmark map names a
    centroid and, as the export's embedding head is untrained, carries the warning."""
    export = trained_export
    centroids = F.normalize(torch.randn(3, 16), dim=1).numpy()
    np.save(tmp_path / "c.npy", centroids)
    (tmp_path / "names.txt").write_text("Eiffel Tower\nKremlin\nZwinger\n")
    photo = _rotated_jpeg(tmp_path / "p.jpg")
    proc = run_cli(
        "explain",
        str(photo),
        "--out",
        str(tmp_path / "cam.png"),
        "--json",
        "--weights",
        str(export),
        "--centroids",
        str(tmp_path / "c.npy"),
        "--centroid-names",
        str(tmp_path / "names.txt"),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["heads"]["scene"]["trained"] is True
    assert summary["heads"]["embedding"]["trained"] is False and summary["trained"] is False
    assert summary["landmark_map_of"].split(" (")[0] in {
        "similarity to Eiffel Tower",
        "similarity to Kremlin",
        "similarity to Zwinger",
    }
    assert _red_caption_pixels(tmp_path / "cam.png") == 0
    assert _red_caption_pixels(tmp_path / "cam.landmark.png") > 20


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setup", "env", "message"),
    [
        ("photo", {"SIGHTLINE_WEIGHTS": "", "SIGHTLINE_ALLOW_UNTRAINED": ""}, "no weights"),
        ("garbage", UNTRAINED, "not an image"),
        ("missing", UNTRAINED, "cannot read: No such file or directory"),
    ],
)
def test_explain_refuses_bad_input_with_one_line(tmp_path: Path, setup, env, message):
    """No weights, a non-image or a missing file: exit 2, one error line, no PNG."""
    photo = tmp_path / "p.jpg"
    if setup == "photo":
        _rotated_jpeg(photo)
    elif setup == "garbage":
        photo.write_bytes(b"this is not a jpeg")
    proc = run_cli("explain", str(photo), "--out", str(tmp_path / "cam.png"), env=env)
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "cam.png").exists()


@pytest.mark.slow
def test_explain_decodes_as_the_worker_does(tmp_path: Path) -> None:
    """A trial found `explain` decoding on its own: a 16-bit scan drawn white (its scenes
    not those of the same scan at 8 bits), a long strip scaled to an 11.7 GB input, a FIFO
    waited on for ever, Pillow's bomb error as a traceback. Now it reads and decodes as the
    worker does, and cuts a strip to 8:1."""
    import os

    from tests.badinput import _png_declaring

    grey = np.tile(np.linspace(20, 230, 96, dtype=np.uint8), (64, 1))
    Image.fromarray(grey).save(tmp_path / "scan8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "scan16.png")  # I;16
    Image.fromarray(np.full((50_000, 3, 3), 128, np.uint8)).save(tmp_path / "strip.png")
    (tmp_path / "bomb.png").write_bytes(_png_declaring(60_000, 60_000))
    os.mkfifo(tmp_path / "fifo.jpg")

    def explain(name: str):
        return run_cli("explain", str(tmp_path / name), "--out", str(tmp_path / "cam.png"),
                       "--json", env=UNTRAINED, timeout=120)  # fmt: skip

    eight, sixteen = (json.loads(explain(n).stdout) for n in ("scan8.png", "scan16.png"))
    assert sixteen["scenes"] == eight["scenes"] and sixteen["size"] == [96, 64]
    strip = explain("strip.png")
    assert strip.returncode == 0, strip.stderr
    got = json.loads(strip.stdout)
    assert got["size"] == [3, 50_000] and got["drawn"] == [3, 24]
    assert got["cut"] == "the centre 3x24 of 3x50000 (at most 8:1)"
    for name, message in (("bomb.png", "image too large"), ("fifo.jpg", "not a regular file")):
        proc = explain(name)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1


def test_explain_never_writes_over_the_photo_or_its_other_map(tmp_path: Path) -> None:
    """`--out p.jpg` wrote the PNG over the user's photo, exit 0; `--out a.png --landmark-out
    a.png` wrote one map over the other; `--out .` was a ValueError."""
    import argparse

    from sightline.cli import CliError
    from sightline.commands.explain import _outputs

    photo = tmp_path / "p.jpg"
    _rotated_jpeg(photo)
    (tmp_path / "link.jpg").symlink_to(photo)
    cases = [
        (photo, None, "is the photo itself"),
        (tmp_path / "link.jpg", None, "is the photo itself"),
        (tmp_path / "a.png", photo, "--landmark-out .* is the photo itself"),
        (tmp_path / "a.png", tmp_path / "a.png", "one file"),
        (tmp_path, None, "is a folder"),
        (Path("."), None, "is a folder"),
        # a checkpoint or centroids file given as the output was written over too
        (tmp_path / "w.safetensors", None, "exists and is not a PNG"),
        (tmp_path / "cam.png", tmp_path / "c.npy", "--landmark-out .* exists and is not a PNG"),
    ]
    (tmp_path / "w.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "c.npy").write_bytes(b"\x93NUMPY")
    for out, lm_out, message in cases:
        args = argparse.Namespace(photo=photo, out=out, landmark_out=lm_out)
        with pytest.raises(CliError, match=message):
            _outputs(args)
    args = argparse.Namespace(photo=photo, out=tmp_path / "cam.png", landmark_out=None)
    assert _outputs(args) == (tmp_path / "cam.png", tmp_path / "cam.landmark.png")
    (tmp_path / "cam.png").write_bytes(b"\x89PNG\r\n\x1a\n...")  # an earlier map: replaced
    assert _outputs(args)[0] == tmp_path / "cam.png"
    assert photo.read_bytes()[:2] == b"\xff\xd8"
