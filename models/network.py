"""The shared-trunk, two-branch network of DESIGN.md.

One trunk (stem .. ``layer3``) runs once per photo; a scene branch (its own ``layer4`` and a
classifier) and a landmark branch (its own ``layer4``, FC, BN, L2 normalisation) share it.
Network code does no I/O and reads no settings: tensors in, tensors out.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet

# A variant is one argument: each builds a torchvision ResNet whose parts we re-arrange.
_ARCHS: dict[str, Callable[[], resnet.ResNet]] = {
    "wide_resnet50_2": lambda: resnet.wide_resnet50_2(weights=None),
    "resnet50": lambda: resnet.resnet50(weights=None),
    # Small enough for CPU tests at 64 px; same structure, same code path.
    "tiny": lambda: resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1]),
}

ARCHS = tuple(_ARCHS)


class SightlineNet(nn.Module):
    """Trunk to ``layer3``, then a scene head and a landmark embedding head."""

    def __init__(self, base: resnet.ResNet, *, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            base.conv1, base.bn1, base.relu, base.maxpool, base.layer1, base.layer2, base.layer3
        )
        feature_dim = base.fc.in_features
        self.scene_layer4 = base.layer4
        self.scene_fc = nn.Linear(feature_dim, num_classes)
        # The seed fine-tunes a copy of the scene model's top blocks for landmarks.
        self.landmark_layer4 = copy.deepcopy(base.layer4)
        self.embed_fc = nn.Linear(feature_dim, embedding_dim)
        self.embed_bn = nn.BatchNorm1d(embedding_dim)
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim

    def scene_features(self, shared: Tensor) -> Tensor:
        """Feature maps of the scene branch (N, C, h, w): what class activation maps use."""
        return self.scene_layer4(shared)

    def landmark_features(self, shared: Tensor) -> Tensor:
        """Feature maps of the landmark branch (N, C, h, w)."""
        return self.landmark_layer4(shared)

    def embed_features(self, shared: Tensor) -> Tensor:
        """The FC + BN output before L2 normalisation: what the training losses see."""
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.landmark_features(shared), 1), 1)
        return self.embed_bn(self.embed_fc(pooled))

    def embed(self, shared: Tensor) -> Tensor:
        """Unit-length landmark embeddings (N, embedding_dim) from trunk output."""
        return F.normalize(self.embed_features(shared), dim=1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Scene logits (N, num_classes) and unit embeddings (N, embedding_dim)."""
        shared = self.trunk(images)
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.scene_features(shared), 1), 1)
        return self.scene_fc(pooled), self.embed(shared)


def sightline_net(
    *, arch: str = "wide_resnet50_2", num_classes: int = 365, embedding_dim: int = 512
) -> SightlineNet:
    """Build an untrained SightlineNet; weights come from a checkpoint."""
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    return SightlineNet(_ARCHS[arch](), num_classes=num_classes, embedding_dim=embedding_dim)
