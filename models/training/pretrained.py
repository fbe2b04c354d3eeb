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

from torch import Tensor

from models.network import SightlineNet
from models.weights_file import WeightsFileError, read_weights_file

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
    """Tensors by torchvision name from a torchvision state-dict file or a CSAIL-layout
    checkpoint (models/weights_file.py: loaded with ``weights_only=True``, no arbitrary
    objects unpickled); raises PretrainedError."""
    try:
        return read_weights_file(path)[0]
    except WeightsFileError as exc:
        raise PretrainedError(str(exc)) from exc


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
