"""The seed's two validation metrics: top-1/top-5 error over the fine classes, and the same
over the scene map's album labels (a label's score is the sum of its classes' scores)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from models.scenes import SceneMap


def _topk_misses(scores: Tensor, targets: Tensor, k: int) -> int:
    k = min(k, scores.shape[1])
    hit = (scores.topk(k, dim=1).indices == targets[:, None]).any(dim=1)
    return int((~hit).sum())


@dataclass
class ErrorMeter:
    """Accumulates top-1/top-5 misses with and without the scene map over batches."""

    scene_map: SceneMap
    images: int = 0
    mapped_images: int = 0
    misses: dict[str, int] = field(
        default_factory=lambda: {"top1": 0, "top5": 0, "map_top1": 0, "map_top5": 0}
    )

    def __post_init__(self) -> None:
        self._matrix = torch.from_numpy(self.scene_map.matrix())
        col = {a: i for i, a in enumerate(self.scene_map.albums)}
        # The album column of each class; -1 for a class in no album.
        self._album_of = torch.tensor(
            [col[a] if a else -1 for a in self.scene_map.albums_by_class], dtype=torch.long
        )

    def update(self, probs: Tensor, targets: Tensor) -> None:
        """``probs`` (N, classes) already renormalised over the kept classes."""
        probs, targets = probs.float().cpu(), targets.cpu()
        self.images += len(targets)
        self.misses["top1"] += _topk_misses(probs, targets, 1)
        self.misses["top5"] += _topk_misses(probs, targets, 5)
        album_targets = self._album_of[targets]
        mapped = album_targets >= 0  # a photo whose class is in no album is not scored here
        if bool(mapped.any()) and self._matrix.shape[1]:
            scores = probs[mapped] @ self._matrix
            self.mapped_images += int(mapped.sum())
            self.misses["map_top1"] += _topk_misses(scores, album_targets[mapped], 1)
            self.misses["map_top5"] += _topk_misses(scores, album_targets[mapped], 5)

    def result(self) -> dict[str, float | int | None]:
        def rate(key: str, n: int) -> float | None:
            return round(self.misses[key] / n, 6) if n else None

        return {
            "images": self.images,
            "top1_error": rate("top1", self.images),
            "top5_error": rate("top5", self.images),
            "mapped_images": self.mapped_images,
            "map_top1_error": rate("map_top1", self.mapped_images),
            "map_top5_error": rate("map_top5", self.mapped_images),
        }


def keep_tensor(scene_map: SceneMap, device: torch.device | str = "cpu") -> Tensor:
    return torch.from_numpy(np.asarray(scene_map.keep(), dtype=bool)).to(device)
