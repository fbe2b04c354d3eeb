"""Losses of the seed's recipes: softmax over the kept (non-sift) classes, and center loss
with no center for the not-a-landmark class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_cross_entropy(logits: Tensor, targets: Tensor, keep: Tensor) -> Tensor:
    """Cross-entropy with the softmax taken over the kept classes only (``keep`` bool (C,))."""
    return F.cross_entropy(logits.float().masked_fill(~keep, float("-inf")), targets)


class CenterLoss(nn.Module):
    """Wen et al.'s center loss: half the mean squared distance of each feature to its class
    center. Samples of ``ignore_index`` (not a landmark) have no center and add nothing: a
    non-landmark is anything, so there is no structure to pull together."""

    def __init__(self, num_classes: int, dim: int, *, ignore_index: int | None = 0) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(num_classes, dim))
        self.ignore_index = ignore_index

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        mask = (
            torch.ones_like(labels, dtype=torch.bool)
            if self.ignore_index is None
            else labels != self.ignore_index
        )
        if not bool(mask.any()):
            return features.sum() * 0.0  # keeps the graph; no landmark in this batch
        diff = features[mask].float() - self.centers[labels[mask]]
        return 0.5 * diff.pow(2).sum(dim=1).mean()
