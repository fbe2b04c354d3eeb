"""The seed's "people" augmentation: first models failed on real cloud photos, where people
stand in front of the landmark, so training pastes person cut-outs into a share of photos."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image

from models.training.data import DataError


class PastePeople:
    """With probability ``share``, paste one random RGBA cut-out standing on the lower edge,
    0.4-0.9 of the photo's height, at a random place, sometimes mirrored."""

    def __init__(self, folder: str | Path, share: float, *, max_cutouts: int = 2000) -> None:
        if not 0.0 <= share <= 1.0:
            raise DataError(f"people share must be within 0..1, got {share}")
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"no such people folder: {folder}")
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".webp"})
        if not self.paths:
            raise DataError(f"{folder}: no RGBA cut-outs (.png or .webp) found")
        self.share = share
        self._cache: dict[Path, Image.Image] = {}
        self._max = max_cutouts

    def _cutout(self, path: Path) -> Image.Image:
        img = self._cache.get(path)
        if img is None:
            with Image.open(path) as raw:
                if "A" not in raw.getbands() and "transparency" not in raw.info:
                    raise DataError(f"{path}: a people cut-out needs an alpha channel")
                img = raw.convert("RGBA")
            if len(self._cache) < self._max:
                self._cache[path] = img
        return img

    def __call__(self, photo: Image.Image) -> Image.Image:
        if self.share == 0.0 or random.random() >= self.share:
            return photo
        person = self._cutout(random.choice(self.paths))
        height = max(1, int(photo.height * random.uniform(0.4, 0.9)))
        width = max(1, int(person.width * height / person.height))
        width = min(width, photo.width)
        person = person.resize((width, height), Image.Resampling.BILINEAR)
        if random.random() < 0.5:
            person = person.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = random.randint(0, photo.width - width)
        y = photo.height - height + int(height * random.uniform(0.0, 0.15))  # feet may be cut
        out = photo.copy()
        out.paste(person, (x, y), mask=person.getchannel("A"))
        return out
