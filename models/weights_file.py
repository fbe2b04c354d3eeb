"""Read someone else's ResNet weights file as tensors by torchvision name: the one loader
behind ``weights import`` (models/weights_import.py) and ``train --pretrained``
(models/training/pretrained.py).

Files load with ``weights_only=True``: no arbitrary objects are unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from models.checkpoint import NOT_A_CHECKPOINT, looks_like_checkpoint


class WeightsFileError(ValueError):
    """A weights file that is not a state dict of tensors, with the reason in one line."""


def read_weights_file(path: str | Path) -> tuple[dict[str, Tensor], str | None]:
    """(tensors by torchvision name, the arch the file names or None) from a torchvision
    state-dict file (``.pth``, ``.safetensors``) or a CSAIL-layout checkpoint
    ``{"arch", "state_dict" with "module." prefixes, ...}``.

    The "module." prefix of DataParallel checkpoints is dropped from every name. Raises
    WeightsFileError (one line naming ``path``) for a missing file, a directory, a file that
    is not a safetensors or torch file, one that does not load without running code (a whole
    pickled model), or one whose content is not a non-empty dict of tensors.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsFileError(f"{path}: is a directory, not a weights file")
    if not path.is_file():
        raise WeightsFileError(f"weights file not found: {path}")
    if not looks_like_checkpoint(path):
        raise WeightsFileError(f"{path}: {NOT_A_CHECKPOINT}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            blob: object = load_file(str(path))
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or corrupt file: one clear line
        # torch's own text suggests weights_only=False, which would run the file's code.
        raise WeightsFileError(
            f"{path}: not a weights file that loads without running code "
            f"({type(exc).__name__}); a whole pickled model (CSAIL's whole_*.pth.tar) is "
            "refused: use the state-dict file (*_places365.pth.tar)"
        ) from exc
    file_arch = None
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        arch = blob.get("arch")  # CSAIL: {"epoch", "arch", "state_dict", "best_prec1"}
        file_arch = arch if isinstance(arch, str) else None
        blob = blob["state_dict"]
    if not isinstance(blob, dict) or not blob:
        raise WeightsFileError(f"{path}: expected a state dict of tensors")
    state: dict[str, Tensor] = {}
    for key, value in blob.items():
        if not isinstance(value, Tensor):
            raise WeightsFileError(f"{path}: entry {key!r} is not a tensor")
        state[str(key).removeprefix("module.")] = value
    return state, file_arch
