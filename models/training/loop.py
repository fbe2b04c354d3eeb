"""What both training recipes share: device and mixed precision, and training state files
that a killed run resumes from."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

Log = Callable[[str], None]
Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]


def no_progress(it: Iterable[Any], desc: str, total: int) -> Iterable[Any]:
    """The default progress hook: none (the CLI passes a tqdm bar)."""
    return it


@dataclass
class TrainResult:
    """What a run leaves: per-epoch metrics of the whole run, the network in memory (eval
    mode, on its device) and the path of the exported worker checkpoint."""

    history: list[dict[str, Any]]
    net: torch.nn.Module
    export: Path | None


class TrainingError(ValueError):
    """A training run that cannot start or go on, with the reason."""


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):  # mps, xla: never tested here
        raise TrainingError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda asked for, but no CUDA device is available")
    return device


class MixedPrecision:
    """Autocast on CUDA (bf16 where supported, else fp16 with a gradient scaler); off on CPU."""

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.enabled = enabled and device.type == "cuda"
        self.dtype = (
            torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.device = device
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.enabled and self.dtype == torch.float16
        )

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    def step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a kill while saving leaves the previous state readable."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrainingError(f"nothing to resume: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"{path}: cannot read training state ({exc})") from exc


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """The whole history as JSON lines, rewritten each epoch so a resume never duplicates."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in history))
    os.replace(tmp, path)
