"""Start from someone else's weights: torchvision ImageNet state dicts (WRN-50-2, ResNet-50)
and the CSAIL Places365 checkpoint layout (``{"state_dict": {"module.conv1.weight": ...}}``).

A plain ResNet's parts go where SightlineNet keeps them: stem and ``layer1..3`` into the
shared trunk, ``layer4`` into both branches (the landmark branch starts as a copy of the
scene one, as in the seed), and ``fc`` into the scene classifier only when it has the
classifier's shape (CSAIL's 365-way head; ImageNet's 1000-way head is left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from models.network import SightlineNet

# torchvision ResNet prefix -> SightlineNet prefixes (trunk is an nn.Sequential).
_PREFIXES: dict[str, tuple[str, ...]] = {
    "conv1.": ("trunk.0.",),
    "bn1.": ("trunk.1.",),
    "layer1.": ("trunk.4.",),
    "layer2.": ("trunk.5.",),
    "layer3.": ("trunk.6.",),
    "layer4.": ("scene_layer4.", "landmark_layer4."),
}


class PretrainedError(ValueError):
    """A weights file that is not a ResNet state dict this network can take."""


@dataclass(frozen=True)
class LoadReport:
    tensors: int  # tensors copied into the network
    classifier: str  # "loaded" or why it was left out


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors by name from a torchvision state-dict file or a CSAIL-layout checkpoint.

    Loads with ``weights_only=True``: no arbitrary objects are unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            blob: object = load_file(str(path))
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or corrupt file: one clear line
        raise PretrainedError(f"{path}: cannot read weights ({exc})") from exc
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        blob = blob["state_dict"]  # CSAIL: {"epoch", "arch", "state_dict", "best_prec1"}
    if not isinstance(blob, dict) or not blob:
        raise PretrainedError(f"{path}: expected a state dict of tensors")
    state: dict[str, Tensor] = {}
    for key, value in blob.items():
        if not isinstance(value, Tensor):
            raise PretrainedError(f"{path}: entry {key!r} is not a tensor")
        # DataParallel checkpoints (CSAIL's) prefix every name with "module.".
        state[key.removeprefix("module.")] = value
    return state


def load_resnet_weights(net: SightlineNet, state: dict[str, Tensor]) -> LoadReport:
    """Copy a torchvision-named ResNet state dict into ``net``; raises on any misfit."""
    target = net.state_dict()
    new: dict[str, Tensor] = {}
    for key, value in state.items():
        for src, dests in _PREFIXES.items():
            if key.startswith(src):
                for dest in dests:
                    name = dest + key[len(src) :]
                    if name not in target:
                        raise PretrainedError(f"{key}: no such tensor in this arch ({name})")
                    if target[name].shape != value.shape:
                        raise PretrainedError(
                            f"{key}: shape {tuple(value.shape)} does not fit this arch "
                            f"({tuple(target[name].shape)}); wrong --arch for this file?"
                        )
                    new[name] = value
                break
    covered = [k for k in target if k.startswith(("trunk.", "scene_layer4.", "landmark_layer4."))]
    # Old checkpoints (CSAIL's) predate BatchNorm's num_batches_tracked counter.
    missing = [k for k in covered if k not in new and not k.endswith("num_batches_tracked")]
    if missing:
        raise PretrainedError(
            f"weights miss {len(missing)} tensors of the trunk or layer4, e.g. {missing[0]}"
        )
    classifier = "left out: the file has no fc"
    if "fc.weight" in state and "fc.bias" in state:
        w = state["fc.weight"]
        if w.shape == net.scene_fc.weight.shape:
            new["scene_fc.weight"], new["scene_fc.bias"] = w, state["fc.bias"]
            classifier = "loaded"
        else:
            classifier = f"left out: fc has {w.shape[0]} classes, the scene head {net.num_classes}"
    net.load_state_dict(new, strict=False)
    return LoadReport(tensors=len(new), classifier=classifier)


def load_pretrained(net: SightlineNet, path: str | Path) -> LoadReport:
    """Read a weights file and copy it into ``net``."""
    state = read_state_dict(path)
    try:
        return load_resnet_weights(net, state)
    except PretrainedError as exc:
        raise PretrainedError(f"{path}: {exc}") from None
