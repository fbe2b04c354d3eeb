"""The pieces of the recipes: center loss, people augmentation, metrics, foreign weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import resnet

from models.network import sightline_net
from models.scenes import SceneMap
from models.training import PretrainedError, load_pretrained
from models.training.augment import PastePeople
from models.training.data import DataError
from models.training.losses import CenterLoss, masked_cross_entropy
from models.training.metrics import ErrorMeter
from models.training.pretrained import read_state_dict
from models.weights_import import WeightsImportError, read_source


def _spread(x: torch.Tensor, labels: torch.Tensor, cls: int) -> float:
    pts = x[labels == cls]
    return float((pts - pts.mean(0)).norm(dim=1).mean())


def test_center_loss_pulls_same_class_embeddings_together():
    """Minimising center loss shrinks each landmark class's spread around its mean."""
    torch.manual_seed(0)
    labels = torch.tensor([1, 1, 1, 2, 2, 2, 0, 0])
    x = torch.nn.Parameter(torch.randn(8, 4))
    loss_fn = CenterLoss(3, 4, ignore_index=0)
    opt = torch.optim.SGD([x, *loss_fn.parameters()], lr=0.5)
    before = [_spread(x.detach(), labels, c) for c in (1, 2)]
    start_loss = float(loss_fn(x, labels).detach())
    for _ in range(40):
        opt.zero_grad()
        loss_fn(x, labels).backward()
        opt.step()
    after = [_spread(x.detach(), labels, c) for c in (1, 2)]
    assert all(a < 0.2 * b for a, b in zip(after, before))
    assert float(loss_fn(x, labels).detach()) < 0.1 * start_loss


def test_center_loss_ignores_the_not_a_landmark_class():
    """Not-a-landmark samples get no gradient, and moving them leaves the loss unchanged."""
    labels = torch.tensor([0, 1, 0, 1])
    x = torch.randn(4, 3, requires_grad=True)
    loss_fn = CenterLoss(2, 3, ignore_index=0)
    loss = loss_fn(x, labels)
    loss.backward()
    assert torch.all(x.grad[labels == 0] == 0) and torch.any(x.grad[labels == 1] != 0)
    moved = x.detach().clone()
    moved[labels == 0] += 100.0
    assert torch.isclose(loss_fn(moved, labels), loss.detach())
    assert float(loss_fn(x, torch.zeros(4, dtype=torch.long)).detach()) == 0.0


def test_masked_cross_entropy_ignores_sift_logits():
    """A huge logit on a left-out class does not change the loss over the kept classes."""
    keep = torch.tensor([True, True, False])
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    spiked = torch.tensor([[2.0, 1.0, 50.0]])
    target = torch.tensor([0])
    assert torch.isclose(
        masked_cross_entropy(logits, target, keep), masked_cross_entropy(spiked, target, keep)
    )


def _people(folder: Path, mode: str = "RGBA") -> Path:
    folder.mkdir()
    arr = np.zeros((40, 10, 4), np.uint8)
    arr[:, :, :3] = (255, 0, 255)
    arr[5:, 2:8, 3] = 255  # opaque body, transparent border
    img = Image.fromarray(arr, "RGBA")
    (img if mode == "RGBA" else img.convert(mode)).save(folder / "p.png")
    return folder


def test_people_augmentation_pastes_only_the_opaque_cutout(tmp_path: Path):
    """share=1 pastes a magenta person standing on the lower edge; share=0 changes nothing."""
    photo = Image.new("RGB", (64, 48), (90, 90, 90))
    folder = _people(tmp_path / "people")
    out = np.asarray(PastePeople(folder, 1.0)(photo))
    magenta = (out[..., 0] > 200) & (out[..., 1] < 60) & (out[..., 2] > 200)
    grey = (out == 90).all(axis=2)
    assert out.shape == (48, 64, 3) and magenta[-1].any()  # standing on the lower edge
    assert grey[0].all() and grey.mean() > 0.5  # at most 0.9 of the height, one person
    assert np.array_equal(np.asarray(PastePeople(folder, 0.0)(photo)), np.asarray(photo))


def test_people_augmentation_refuses_cutouts_without_alpha(tmp_path: Path):
    """A cut-out with no alpha channel is refused with a clear error."""
    aug = PastePeople(_people(tmp_path / "people", mode="RGB"), 1.0)
    with pytest.raises(DataError, match="alpha"):
        aug(Image.new("RGB", (32, 32)))


def test_error_meter_counts_a_miss_within_an_album_as_a_mapped_hit():
    """Confusing forest_path for bamboo_forest is a fine-class miss but an album hit."""
    sm = SceneMap.load()
    idx = {c: i for i, c in enumerate(sm.categories)}
    probs = torch.zeros(3, len(sm.categories))
    probs[0, idx["bamboo_forest"]], probs[0, idx["beach"]] = 0.6, 0.4  # truth forest_path
    probs[1, idx["beach"]] = 1.0  # truth beach
    probs[2, idx["corridor"]] = 1.0  # truth corridor: in no album
    targets = torch.tensor([idx["forest_path"], idx["beach"], idx["corridor"]])
    meter = ErrorMeter(sm)
    meter.update(probs, targets)
    out = meter.result()
    assert out["images"] == 3 and out["mapped_images"] == 2
    assert out["top1_error"] == pytest.approx(1 / 3) and out["map_top1_error"] == 0.0


def _save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


def test_torchvision_imagenet_state_dict_fills_trunk_and_both_layer4s(tmp_path: Path):
    """A torchvision ResNet-50 file goes into trunk and both branches; its 1000-way fc not."""
    torch.manual_seed(0)
    src = resnet.resnet50(weights=None)
    path = _save(src.state_dict(), tmp_path / "resnet50.pth")
    net = sightline_net(arch="resnet50", embedding_dim=8)
    report = load_pretrained(net, path)
    assert torch.equal(net.trunk[0].weight, src.conv1.weight)
    assert torch.equal(net.trunk[6][2].conv2.weight, src.layer3[2].conv2.weight)
    for branch in (net.scene_layer4, net.landmark_layer4):
        assert torch.equal(branch[1].bn3.running_var, src.layer4[1].bn3.running_var)
    assert "1000 classes" in report.classifier


def test_csail_places365_layout_loads_with_its_365_way_classifier(tmp_path: Path):
    """CSAIL's {'state_dict': {'module.…'}} without BN counters loads, fc into the scene head."""
    torch.manual_seed(1)
    src = resnet.resnet50(weights=None, num_classes=365)
    state = {
        f"module.{k}": v for k, v in src.state_dict().items() if "num_batches_tracked" not in k
    }
    blob = {"epoch": 90, "arch": "resnet50", "state_dict": state, "best_prec1": 54.7}
    net = sightline_net(arch="resnet50", embedding_dim=8)
    report = load_pretrained(net, _save(blob, tmp_path / "resnet50_places365.pth.tar"))
    assert report.classifier == "loaded"
    assert torch.equal(net.scene_fc.weight, src.fc.weight)
    assert torch.equal(net.trunk[5][0].downsample[0].weight, src.layer2[0].downsample[0].weight)


def test_weights_of_another_arch_are_refused_clearly(tmp_path: Path):
    """A ResNet-18-shaped file for the tiny arch's sibling resnet50 names the misfit."""
    path = _save(resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1]).state_dict(), tmp_path / "t.pth")
    with pytest.raises(PretrainedError, match=r"does not fit this arch|no such tensor"):
        load_pretrained(sightline_net(arch="resnet50", embedding_dim=8), path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="not a safetensors or torch checkpoint"):
        load_pretrained(sightline_net(arch="tiny", embedding_dim=8), tmp_path / "junk.pth")


def _bad_weights(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files neither loader may take, each with (a regex of) its one-line reason."""
    (tmp_path / "folder.pth").mkdir()
    (tmp_path / "notes.pth").write_text("shopping: milk, eggs\n")
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole_model.pth.tar")  # a pickled module
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, tmp_path / "mixed.pth")
    torch.save({}, tmp_path / "nothing.pth")
    return {
        "missing": (tmp_path / "missing.pth", "weights file not found"),
        "directory": (tmp_path / "folder.pth", "is a directory, not a weights file"),
        "text": (tmp_path / "notes.pth", "not a safetensors or torch checkpoint"),
        "empty": (tmp_path / "empty.pth", "not a safetensors or torch checkpoint"),
        "whole model": (tmp_path / "whole_model.pth.tar", "loads without running code"),
        "not all tensors": (tmp_path / "mixed.pth", "entry 'epoch' is not a tensor"),
        "no tensors": (tmp_path / "nothing.pth", "expected a state dict of tensors"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "text", "empty", "whole model", "not all tensors", "no tensors"],
)
def test_train_and_weights_import_refuse_a_bad_weights_file_alike(tmp_path: Path, case: str):
    """`train --pretrained` and `weights import` read weights files with one loader: each bad
    file is refused by both with the same one-line reason naming the file."""
    path, reason = _bad_weights(tmp_path)[case]
    with pytest.raises(PretrainedError, match=reason) as trained:
        load_pretrained(sightline_net(arch="tiny", embedding_dim=8), path)
    with pytest.raises(WeightsImportError, match=reason) as imported:
        read_source(path)
    assert str(trained.value) == str(imported.value)
    assert str(path) in str(trained.value) and "\n" not in str(trained.value)


def test_both_loaders_read_a_csail_file_to_the_same_tensors(tmp_path: Path):
    """The shared loader drops DataParallel's "module." prefix and reports the file's arch."""
    src = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=365).state_dict()
    blob = {"arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in src.items()}}
    path = _save(blob, tmp_path / "resnet18_places365.pth.tar")
    state, arch = read_source(path)
    assert arch == "resnet18" and sorted(state) == sorted(src)
    assert all(torch.equal(state[k], v) for k, v in src.items())
    assert sorted(read_state_dict(path)) == sorted(src)


@pytest.mark.slow
def test_train_scene_cli_starts_from_a_torchvision_file(tmp_path: Path):
    """`train scene --init FILE` loads a torchvision-layout file and says what it took."""
    from test_training import make_places

    from tests.support import run_cli

    src = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1])
    path = _save(src.state_dict(), tmp_path / "tiny_imagenet.pth")
    data = make_places(tmp_path / "places", train=2, val=1)
    proc = run_cli(
        "train",
        "scene",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
        "--arch",
        "tiny",
        "--init",
        str(path),
        "--epochs",
        "1",
        "--workers",
        "0",
        "--batch-size",
        "4",
        "--embedding-dim",
        "8",
    )
    assert proc.returncode == 0, proc.stderr
    assert "tensors; classifier left out: fc has 1000 classes" in proc.stdout
