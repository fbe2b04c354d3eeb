"""Turn someone else's published weights into a serving checkpoint (``weights import``).

Sources:

- ``csail-places365``: the CSAIL Places365 checkpoints (``resnet50_places365.pth.tar``), a
  pickled dict ``{"epoch", "arch", "state_dict" with "module." prefixes, "best_prec1"}``
  whose ``fc`` is a 365-way Places365 classifier in the index order of
  ``categories_places365.txt``. Their published preprocessing (``run_placesCNN_basic.py``):
  resize to 256, centre crop 224, ImageNet mean and std.
- ``torchvision``: a plain torchvision ResNet state dict (``.pth`` or ``.safetensors``). Its
  ``fc`` becomes the scene head only when it is 365 wide; an ImageNet 1000-way ``fc`` is
  left out and the scene head stays untrained (the file is then a trunk to train from).

The trunk and ``layer4`` go where SightlineNet keeps them (models/training/pretrained.py);
the landmark branch gets a copy of ``layer4`` and an untrained embedding head, and the
checkpoint says so: its scene head is "imported from ...", its embedding head untrained.
Files load with ``weights_only=True``: no arbitrary objects are unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from models.checkpoint import (
    UNTRAINED,
    CheckpointMeta,
    HeadProvenance,
    file_sha256,
    nonfinite_tensor,
    save_checkpoint,
)
from models.network import ARCHS, SightlineNet, sightline_net
from models.scenes import load_categories
from models.training.pretrained import PretrainedError, load_resnet_weights
from models.transforms import InputTransform
from models.weights_file import WeightsFileError, read_weights_file

SOURCES = ("csail-places365", "torchvision")
# The archs a torchvision-layout ResNet file can be: tried in this order when not given.
_GUESS_ORDER = ("resnet50", "wide_resnet50_2", "tiny")


class WeightsImportError(ValueError):
    """A weights file that cannot become a serving checkpoint, with the reason in one line."""


@dataclass(frozen=True)
class ImportResult:
    meta: CheckpointMeta
    tensors: int  # tensors copied from the source file
    classifier: str  # "loaded" or why the source's fc was left out
    out_sha256: str


def read_source(path: str | Path) -> tuple[dict[str, Tensor], str | None]:
    """(tensors by torchvision name, the arch the file names or None) from a CSAIL-layout
    checkpoint or a plain state dict (models/weights_file.py); raises WeightsImportError."""
    try:
        return read_weights_file(path)
    except WeightsFileError as exc:
        raise WeightsImportError(str(exc)) from exc


def _fits(arch: str, state: dict[str, Tensor]) -> bool:
    from torchvision.models import resnet

    base = {
        "resnet50": lambda: resnet.resnet50(weights=None),
        "wide_resnet50_2": lambda: resnet.wide_resnet50_2(weights=None),
        "tiny": lambda: resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1]),
    }[arch]()
    want = {k: v.shape for k, v in base.state_dict().items() if not k.startswith("fc.")}
    return all(
        k in state and state[k].shape == s for k, s in want.items() if "num_batches" not in k
    )


def pick_arch(state: dict[str, Tensor], *, given: str | None, file_arch: str | None) -> str:
    """The arch to build: ``given``, else the one whose tensor shapes the file fits."""
    if given is not None:
        if given not in ARCHS:
            raise WeightsImportError(f"unknown --arch {given!r}; choose one of {', '.join(ARCHS)}")
        return given
    for arch in _GUESS_ORDER:
        if _fits(arch, state):
            return arch
    named = f" (the file says {file_arch!r})" if file_arch else ""
    raise WeightsImportError(
        f"the weights fit none of {', '.join(_GUESS_ORDER)}{named}: not a torchvision-layout "
        "ResNet this network can take"
    )


def import_weights(
    path: str | Path,
    *,
    source: str,
    out: str | Path,
    arch: str | None = None,
    embedding_dim: int = 512,
    transform: InputTransform | None = None,
    version: str | None = None,
) -> ImportResult:
    """Convert ``path`` to a serving checkpoint at ``out`` (safetensors with metadata).

    The categories are the Places365 classes in index order; the transform is the source's
    own preprocessing (``transform`` overrides it). Raises WeightsImportError.
    """
    if source not in SOURCES:
        raise WeightsImportError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    path = Path(path)
    state, file_arch = read_source(path)
    bad = nonfinite_tensor(state)
    if bad:
        raise WeightsImportError(f"{path}: tensor {bad} holds NaN or infinite values")
    arch = pick_arch(state, given=arch, file_arch=file_arch)
    categories = load_categories()
    fc = state.get("fc.weight")
    if source == "csail-places365" and (fc is None or fc.shape[0] != len(categories)):
        width = "no fc" if fc is None else f"an fc of {fc.shape[0]} classes"
        raise WeightsImportError(
            f"{path}: a CSAIL Places365 checkpoint has a {len(categories)}-way fc, this has "
            f"{width}; use --from torchvision for a trunk"
        )
    torch.manual_seed(0)  # the parts the file does not give (embedding head) repeat
    net: SightlineNet = sightline_net(
        arch=arch, num_classes=len(categories), embedding_dim=embedding_dim
    )
    try:
        report = load_resnet_weights(net, state)
    except PretrainedError as exc:
        raise WeightsImportError(f"{path}: {exc} (arch {arch})") from None
    digest = file_sha256(path)
    origin = f"imported from {source} {path.name} (sha256 {digest[:12]})"
    if report.classifier == "loaded":
        scene = HeadProvenance(True, origin)
    else:  # e.g. ImageNet's 1000-way fc: the trunk is imported, the classifier is not
        scene = HeadProvenance(False, f"random initialisation; the source's fc {report.classifier}")
    meta = CheckpointMeta(
        arch=arch,
        categories=categories,
        embedding_dim=embedding_dim,
        version=version or f"{source}-{arch}-{digest[:8]}",
        # Both sources publish torchvision's ImageNet preprocessing: 256, 224, mean, std.
        transform=transform or InputTransform(),
        scene_head=scene,
        embedding_head=UNTRAINED,
        source={"kind": source, "file": path.name, "sha256": digest, "arch": file_arch or ""},
    )
    if not Path(out).parent.is_dir():  # safetensors says only "I/O error"
        raise WeightsImportError(f"cannot write {out}: its folder does not exist")
    out_sha = save_checkpoint(net.eval(), meta, out)
    return ImportResult(meta, report.tensors, report.classifier, out_sha)
