"""Checkpoints travel with their metadata: arch, categories, transform, embedding size,
version, hash. Loading never unpickles arbitrary objects."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.network import SightlineNet, sightline_net
from models.scenes import load_categories
from models.transforms import InputTransform, default_transform

_META_KEY = "sightline"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason."""


@dataclass(frozen=True)
class CheckpointMeta:
    arch: str
    categories: tuple[str, ...]
    embedding_dim: int
    version: str
    transform: InputTransform = field(default_factory=InputTransform)
    trained: bool = True
    # Sift classes the network was trained without; serving never predicts them.
    excluded: tuple[str, ...] = ()
    sha256: str = ""

    @property
    def model_version(self) -> str:
        """What every photo row records: the version plus a short content hash."""
        return f"{self.version}+{self.sha256[:12]}" if self.sha256 else self.version

    def to_json(self) -> str:
        return json.dumps(
            {
                "arch": self.arch,
                "categories": list(self.categories),
                "embedding_dim": self.embedding_dim,
                "version": self.version,
                "transform": self.transform.to_dict(),
                "trained": self.trained,
                "excluded": list(self.excluded),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CheckpointMeta:
        data = json.loads(text)
        return cls(
            arch=data["arch"],
            categories=tuple(data["categories"]),
            embedding_dim=int(data["embedding_dim"]),
            version=str(data["version"]),
            transform=InputTransform.from_dict(data["transform"]),
            trained=bool(data.get("trained", True)),
            excluded=tuple(data.get("excluded", ())),
        )


def build_from_meta(meta: CheckpointMeta) -> SightlineNet:
    # The classifier's width comes from the categories the checkpoint ships with.
    return sightline_net(
        arch=meta.arch, num_classes=len(meta.categories), embedding_dim=meta.embedding_dim
    )


def save_checkpoint(model: SightlineNet, meta: CheckpointMeta, path: str | Path) -> str:
    """Write a safetensors checkpoint with its metadata; returns its sha256."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={_META_KEY: meta.to_json()})
    return _sha256(Path(path))


def load_checkpoint(path: str | Path) -> tuple[SightlineNet, CheckpointMeta]:
    """Load a ``.safetensors`` file, or a ``.pt``/``.pth`` dict of {state_dict, meta}."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                header = (f.metadata() or {}).get(_META_KEY)
                if header is None:
                    raise CheckpointError(f"{path}: no sightline metadata in checkpoint")
                meta = CheckpointMeta.from_json(header)
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
                raise CheckpointError(f"{path}: expected a dict with 'state_dict' and 'meta'")
            meta = CheckpointMeta.from_json(blob["meta"])
            state = blob["state_dict"]
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt or foreign file: one clear line, never a traceback
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from exc
    model = build_from_meta(meta)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit arch {meta.arch!r}: {exc}") from exc
    return model.eval(), replace(meta, sha256=_sha256(path))


def untrained(
    *,
    arch: str,
    categories: tuple[str, ...],
    embedding_dim: int = 512,
    transform: InputTransform | None = None,
    seed: int = 0,
) -> tuple[SightlineNet, CheckpointMeta]:
    """A randomly initialised network, seeded so runs repeat. Its outputs mean nothing."""
    torch.manual_seed(seed)
    meta = CheckpointMeta(
        arch=arch,
        categories=categories,
        embedding_dim=embedding_dim,
        version=f"untrained-{arch}-seed{seed}",
        transform=transform or InputTransform(),
        trained=False,
    )
    return build_from_meta(meta).eval(), meta


class NoWeights(CheckpointError):
    """Neither weights nor leave to run an untrained network."""


def load_or_untrained(
    weights: str | Path | None,
    *,
    allow_untrained: bool = False,
    arch: str = "wide_resnet50_2",
) -> tuple[SightlineNet, CheckpointMeta]:
    """The serving policy: the checkpoint at ``weights``; else, only when ``allow_untrained``,
    an untrained ``arch`` over the shipped Places365 categories with that arch's default
    transform (its outputs mean nothing, and ``meta.trained`` says so).

    Raises NoWeights when there are neither, CheckpointError for an unreadable checkpoint.
    """
    if weights:
        return load_checkpoint(weights)
    if allow_untrained:
        return untrained(arch=arch, categories=load_categories(), transform=default_transform(arch))
    raise NoWeights("no weights, and running an untrained network is not allowed")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
