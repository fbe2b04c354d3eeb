"""Checkpoints travel with their metadata: arch, categories, transform, embedding size,
version, hash, and the provenance of each head. Loading never unpickles arbitrary objects."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.network import SightlineNet, sightline_net
from models.scenes import control_character, load_categories
from models.transforms import InputTransform, default_transform

_META_KEY = "sightline"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason."""


@dataclass(frozen=True)
class HeadProvenance:
    """Where one head's weights came from: trained (with its source) or untrained.

    ``source`` is one line, e.g. "imported from csail-places365 resnet50_places365.pth.tar",
    "train scene run runs/scene version scene-resnet50-e3", or "random initialisation".
    """

    trained: bool
    source: str

    def to_dict(self) -> dict[str, object]:
        return {"trained": self.trained, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict) -> HeadProvenance:
        """Raises ValueError unless ``trained`` is a JSON boolean: ``bool("no")`` is True, and
        a head must never read as trained by accident."""
        return cls(trained=_flag(data["trained"]), source=str(data.get("source", "")))

    def describe(self) -> str:
        """Either `real (SOURCE)` or `UNTRAINED (SOURCE)`: what status lines print."""
        return f"{'real' if self.trained else 'UNTRAINED'} ({self.source})"


UNTRAINED = HeadProvenance(trained=False, source="random initialisation")

MAX_EMBEDDING_DIM = 16_000  # pgvector's halfvec holds at most 16,000 dimensions
_MAX_VERSION = 200


def version_problem(version: object) -> str | None:
    """Why ``version`` cannot name a model, or None. It is written into every photo row
    (``model_version``): a NUL failed the worker at start, a control character made two
    versions look alike."""
    if not isinstance(version, str) or not version.strip():
        return "a version must be a non-empty text"
    if len(version) > _MAX_VERSION:
        return f"a version is at most {_MAX_VERSION} characters"
    if version != version.strip():
        return f"version {version!a} has white space around it"
    bad = control_character(version)
    if bad:
        return f"version {version!a} has a control character ({bad!a})"
    return None


def embedding_dim_problem(dim: object) -> str | None:
    """Why ``dim`` cannot be an embedding width, or None (a width of 10^10 allocated 20 TB
    before the weights were read)."""
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_EMBEDDING_DIM:
        return f"embedding_dim must be a whole number from 1 to {MAX_EMBEDDING_DIM:,}, got {dim!a}"
    return None


@dataclass(frozen=True)
class CheckpointMeta:
    arch: str
    categories: tuple[str, ...]
    embedding_dim: int
    version: str
    transform: InputTransform = field(default_factory=InputTransform)
    # Each head's own provenance: an imported scene classifier beside an untrained
    # embedding head is a real scene model and no landmark model.
    scene_head: HeadProvenance = UNTRAINED
    embedding_head: HeadProvenance = UNTRAINED
    # Sift classes the network was trained without; serving never predicts them.
    excluded: tuple[str, ...] = ()
    # The file the weights were converted from (weights import): kind, name, sha256.
    source: dict[str, str] = field(default_factory=dict)
    sha256: str = ""

    def __post_init__(self) -> None:
        problem = version_problem(self.version) or embedding_dim_problem(self.embedding_dim)
        if problem:
            raise ValueError(problem)

    @property
    def trained(self) -> bool:
        """Both heads trained: every output of this network is a prediction."""
        return self.scene_head.trained and self.embedding_head.trained

    @property
    def serves_landmarks(self) -> bool:
        """Whether landmark matches may be served from this network's embeddings.

        Yes with a trained embedding head. A network with no trained head at all (the
        explicit untrained mode of demos and tests) still runs the matching plumbing, and
        everything it writes is marked untrained. A real scene head beside an untrained
        embedding head serves scenes only, so real albums never sit beside noise matches.
        """
        return self.embedding_head.trained or not self.scene_head.trained

    def heads(self) -> dict[str, dict[str, object]]:
        """{"scene": {...}, "embedding": {...}}: each head's provenance, for JSON output."""
        return {"scene": self.scene_head.to_dict(), "embedding": self.embedding_head.to_dict()}

    def heads_line(self) -> str:
        """One line naming which heads are real, for the demo and `sightline status`."""
        return (
            f"scene head {self.scene_head.describe()}; "
            f"landmark embedding head {self.embedding_head.describe()}"
        )

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
                "heads": self.heads(),
                "excluded": list(self.excluded),
                "source": self.source,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CheckpointMeta:
        data = json.loads(text)
        if "heads" in data:
            scene = HeadProvenance.from_dict(data["heads"]["scene"])
            embedding = HeadProvenance.from_dict(data["heads"]["embedding"])
        else:  # written before per-head provenance: one flag covered both heads
            old = HeadProvenance(
                trained=_flag(data.get("trained", True)),
                source="checkpoint predates per-head provenance",
            )
            scene = embedding = old
        return cls(
            arch=data["arch"],
            categories=_categories(data["categories"]),
            embedding_dim=data["embedding_dim"],  # checked, as the version, by __post_init__
            version=data["version"],
            transform=InputTransform.from_dict(data["transform"]),
            scene_head=scene,
            embedding_head=embedding,
            excluded=tuple(data.get("excluded", ())),
            source={str(k): str(v) for k, v in (data.get("source") or {}).items()},
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
    return file_sha256(Path(path))


def load_checkpoint(path: str | Path) -> tuple[SightlineNet, CheckpointMeta]:
    """Load a ``.safetensors`` file, or a ``.pt``/``.pth`` dict of {state_dict, meta}.

    Raises CheckpointError (one line naming the file) for a missing file, a directory, a
    foreign or corrupt file, one without sightline metadata, or weights that do not fit the
    arch the metadata names.
    """
    path = Path(path)
    header, state = _read_checkpoint(path, tensors=True)
    meta = _parse_meta(path, header)
    try:
        model = build_from_meta(meta)
    except ValueError as exc:  # an arch this version does not know
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        # torch lists each tensor on its own line after a heading: one line, tensors named
        detail = " ".join(str(exc).split()).removeprefix(
            "Error(s) in loading state_dict for SightlineNet: "
        )
        raise CheckpointError(
            f"{path}: weights do not fit arch {meta.arch!r}: {detail[:400]}"
        ) from exc
    bad = nonfinite_tensor(state)
    if bad:  # every photo's output would be NaN: refuse at load, not per photo
        raise CheckpointError(f"{path}: tensor {bad} holds NaN or infinite values")
    return model.eval(), replace(meta, sha256=file_sha256(path))


def nonfinite_tensor(state: Any) -> str | None:
    """The name of the first floating-point tensor with a NaN or an infinity, else None."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            return name
    return None


def read_meta(path: str | Path) -> CheckpointMeta:
    """A checkpoint's metadata without building the network (it still hashes the file, for
    ``model_version``): a ``.safetensors`` header, or the ``meta`` of a ``.pt``/``.pth`` dict
    loaded with ``weights_only=True`` (the layout ``load_checkpoint`` reads).

    Raises CheckpointError for a missing file, a directory, or one without sightline metadata.
    """
    path = Path(path)
    header, _ = _read_checkpoint(path, tensors=False)
    return replace(_parse_meta(path, header), sha256=file_sha256(path))


_MAX_NAME = 200  # characters, as a correction's label (sightline_correct)


def _categories(names: Any) -> tuple[str, ...]:
    """A checkpoint's class names, checked: they become scene rows and album-map keys, and a
    NUL or a control character in one failed every batch's write, not a load. ValueError,
    one line, naming the first bad one (escaped: ``repr``). Two names that look the same
    (equal once normalised to NFC and stripped of invisible format characters: "café"
    composed and decomposed, "forest" and "forest" + ZWSP) are a repeat."""
    if not isinstance(names, list) or not names:
        raise ValueError("categories must be a non-empty list of class names")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"category {i} is not a class name: {name!r}")
        if len(name) > _MAX_NAME:
            raise ValueError(f"category {i} is longer than {_MAX_NAME} characters")
        if name != name.strip():
            raise ValueError(f"category {i} has white space around it: {name!r}")
        bad = control_character(name)  # models.scenes: the album labels' rule too
        if bad:
            raise ValueError(f"category {i} has a control character ({bad!r}): {name!r}")
        # compared as shown: normalised, without the invisible format characters
        key = "".join(c for c in unicodedata.normalize("NFC", name)
                      if unicodedata.category(c) != "Cf")  # fmt: skip
        if not key.strip():
            raise ValueError(f"category {i} shows nothing: {name!a}")
        if key in seen:
            raise ValueError(f"category {i} repeats category {seen[key]}: {name!a} looks "
                             f"like {names[seen[key]]!a}")  # fmt: skip
        seen[key] = i
    return tuple(names)


def _read_checkpoint(path: Path, *, tensors: bool) -> tuple[Any, dict[str, Any] | None]:
    """(the sightline metadata as stored: JSON text, a dict, or None when a ``.safetensors``
    header has none; the tensors by name when ``tensors`` and there is metadata, else None).

    A ``.pt``/``.pth`` file loads with ``weights_only=True``. Raises CheckpointError, one
    line: a missing file, a directory, a foreign or corrupt file.
    """
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if not looks_like_checkpoint(path):
            raise ValueError(NOT_A_CHECKPOINT)
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                header = (f.metadata() or {}).get(_META_KEY)
                wanted = tensors and header is not None
                state = {k: f.get_tensor(k) for k in f.keys()} if wanted else None  # noqa: SIM118
            return header, state
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
            raise CheckpointError(f"{path}: expected a dict with 'state_dict' and 'meta'")
        return blob["meta"], (blob["state_dict"] if tensors else None)
    except CheckpointError:
        raise
    except Exception as exc:  # a foreign or corrupt file: one clear line, never a traceback
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from exc


def _flag(value: Any) -> bool:
    """A metadata flag, which must be true or false (not "yes", 1 or null)."""
    if not isinstance(value, bool):
        raise ValueError(f"trained must be true or false, not {json.dumps(value)}")
    return value


def _parse_meta(path: Path, header: Any) -> CheckpointMeta:
    """The CheckpointMeta of ``header`` (see _read_checkpoint); CheckpointError when none."""
    if header is None:
        raise CheckpointError(f"{path}: no sightline metadata in checkpoint")
    try:
        return CheckpointMeta.from_json(header)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable sightline metadata ({exc})") from exc


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

    A checkpoint none of whose heads is trained (a torchvision trunk imported with random
    heads) is an untrained network too: it needs ``allow_untrained`` as well.

    Raises NoWeights when there are neither, CheckpointError for an unreadable checkpoint.
    """
    if weights:
        net, meta = load_checkpoint(weights)
        if not allow_untrained and not (meta.scene_head.trained or meta.embedding_head.trained):
            raise NoWeights(
                f"{weights}: neither head of this checkpoint is trained (its outputs are noise); "
                "serving it needs SIGHTLINE_ALLOW_UNTRAINED=1"
            )
        return net, meta
    if allow_untrained:
        return untrained(arch=arch, categories=load_categories(), transform=default_transform(arch))
    raise NoWeights("no weights, and running an untrained network is not allowed")


NOT_A_CHECKPOINT = "not a safetensors or torch checkpoint"


def looks_like_checkpoint(path: str | Path) -> bool:
    """Whether the file starts like a safetensors file (an 8-byte header length, then ``{``)
    or a torch file (a zip archive, or a legacy pickle's protocol byte 0x80).

    Sniffed first so a text file gets a plain reason rather than a loader's internal error.
    """
    with open(path, "rb") as f:
        head = f.read(9)
    return head[:4] == b"PK\x03\x04" or head[:1] == b"\x80" or head[8:9] == b"{"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
