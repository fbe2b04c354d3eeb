"""Training data on disk: Places365-style image folders and landmark manifests.

Image folders: ``ROOT/train/<class>/*.jpg`` and ``ROOT/val/<class>/*.jpg``. A class with a
sub-type is a nested folder (``arena/hockey``), or one folder with a dash
(``arena-hockey``, as Places365's "easy format" archive names it); a one-letter first level
(``a/airfield``, as the original archive) is skipped.

Manifest: a CSV with ``path,landmark,stage``; ``path`` relative to the manifest's folder,
``landmark`` empty or ``-`` for a photo that shows no landmark, ``stage`` an integer (the
curriculum stage, e.g. the world region, in the order it is trained).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from models.transforms import InputTransform

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
NOT_A_LANDMARK = ("", "-")


class DataError(ValueError):
    """A data folder or manifest that does not have the expected layout."""


def _class_of(rel: Path, known: frozenset[str]) -> str | None:
    parts = rel.parts
    if len(parts) > 1 and len(parts[0]) == 1:  # "a/airfield" in the original archive
        parts = parts[1:]
    name = "/".join(parts)
    for candidate in (name, name.replace("-", "/")):
        if candidate in known:
            return candidate
    return None


def scan_image_folder(
    root: str | Path, categories: Sequence[str], excluded: frozenset[str] = frozenset()
) -> list[tuple[Path, int]]:
    """(image path, class index) for every image under ``root``; sift classes left out."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such data folder: {root}")
    index = {c: i for i, c in enumerate(categories)}
    known = frozenset(categories)
    items: list[tuple[Path, int]] = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        rel = path.parent.relative_to(root)
        if rel == Path("."):
            raise DataError(f"{root}: images must sit in class folders, found {path.name}")
        name = _class_of(rel, known)
        if name is None:
            raise DataError(f"{root}: folder {rel.as_posix()!r} is not a Places365 class")
        if name not in excluded:
            items.append((path, index[name]))
    if not items:
        raise DataError(f"{root}: no images found")
    return items


@dataclass(frozen=True)
class ManifestRow:
    path: Path
    landmark: str | None  # None: not a landmark
    stage: int


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a landmark manifest; paths resolved against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    rows: list[ManifestRow] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        need = {"path", "landmark", "stage"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise DataError(f"{path}: header must have columns {', '.join(sorted(need))}")
        for n, row in enumerate(reader, start=2):
            try:
                stage = int(row["stage"])
            except (TypeError, ValueError):
                raise DataError(f"{path}:{n}: stage must be an integer") from None
            if not (row["path"] or "").strip():
                raise DataError(f"{path}:{n}: empty path")
            landmark = (row["landmark"] or "").strip()
            rows.append(
                ManifestRow(
                    path=path.parent / row["path"].strip(),
                    landmark=None if landmark in NOT_A_LANDMARK else landmark,
                    stage=stage,
                )
            )
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def train_transform(t: InputTransform) -> v2.Compose:
    """The standard augmentation: random resized crop, horizontal flip, light colour jitter."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(t.crop, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(t.mean), list(t.std)),
        ]
    )


def eval_transform(t: InputTransform) -> v2.Compose:
    """What serving does: shorter side to ``resize``, centre crop ``crop``, normalise."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(t.resize, antialias=True),
            v2.CenterCrop(t.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(t.mean), list(t.std)),
        ]
    )


def open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


class ImageList(Dataset):
    """(image, target) pairs; ``before`` runs on the PIL image (e.g. people augmentation)."""

    def __init__(
        self,
        items: Sequence[tuple[Path, int]],
        transform: Callable[[Image.Image], Tensor],
        before: Callable[[Image.Image], Image.Image] | None = None,
    ) -> None:
        self.items = list(items)
        self.transform = transform
        self.before = before

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, target = self.items[i]
        img = open_rgb(path)
        if self.before is not None:
            img = self.before(img)
        return self.transform(img), target
