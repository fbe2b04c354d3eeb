"""The input transform a checkpoint ships with; serving takes it from there."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Input sides a transform may ask for, in pixels: a network's input is crop x crop, so the
# bound is its memory (torchvision's models serve at 224 to 600).
MIN_SIDE, MAX_SIDE = 16, 2048


@dataclass(frozen=True)
class InputTransform:
    """Resize the shorter side to ``resize``, centre-crop ``crop``, normalise."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        """ValueError, one line, for values no photo can be served at: a checkpoint's
        metadata carries them, and a crop of 0 failed every photo, 99,999 took 22 GB."""
        if not MIN_SIDE <= self.crop <= self.resize <= MAX_SIDE:
            raise ValueError(
                f"transform needs {MIN_SIDE} <= crop <= resize <= {MAX_SIDE} px, got crop "
                f"{self.crop} and resize {self.resize}"
            )
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise ValueError(f"transform {name} needs 3 finite values, got {values}")
        # float32 tensors carry them: 1e-50 became 0 and 1e39 infinity (NaN for every photo);
        # inputs scaled 0..1 or 0..255 need far less room than this
        if max(abs(v) for v in self.mean) > 1000 or not all(1e-3 <= v <= 1000 for v in self.std):
            raise ValueError(
                f"transform needs |mean| <= 1000 and 0.001 <= std <= 1000, got mean "
                f"{self.mean} and std {self.std}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InputTransform:
        return cls(
            resize=int(data["resize"]),
            crop=int(data["crop"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
        )

    def to_batch(self, crops: list[np.ndarray]) -> Tensor:
        """Stack uint8 HxWx3 crops of ``crop`` size into a normalised NCHW float batch."""
        for c in crops:
            if c.shape != (self.crop, self.crop, 3) or c.dtype != np.uint8:
                raise ValueError(f"expected uint8 {self.crop}x{self.crop}x3 crops, got {c.shape}")
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (batch - mean) / std


def default_transform(arch: str) -> InputTransform:
    """The input size an arch trains and serves at when nothing else says: the tiny test
    network works at 64 px, the real ones at torchvision's 256/224."""
    return InputTransform(resize=73, crop=64) if arch == "tiny" else InputTransform()
