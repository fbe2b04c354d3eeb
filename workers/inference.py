"""The one model wrapper of a worker process: ``load()`` once, then ``predict`` batches."""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from models.checkpoint import CheckpointMeta, NoWeights, load_or_untrained
from models.network import SightlineNet
from models.precision import cpu_autocast, resolve_cpu_bf16
from models.scenes import SceneMap
from models.transforms import InputTransform
from workers.settings import Settings

log = logging.getLogger("sightline.worker")


class ModelUnavailable(RuntimeError):
    """No usable weights: the worker refuses to start."""


class SceneLandmarkModel:
    """WRN-50-2 scene probabilities and landmark embeddings for batches of crops."""

    def __init__(
        self,
        *,
        weights: str | None,
        allow_untrained: bool = False,
        arch: str = "wide_resnet50_2",
        device: str = "auto",
        scene_map_path: str | None = None,
        sift_path: str | None = None,
        max_albums: int = 3,
        cpu_bf16: str = "auto",
    ) -> None:
        self.weights = weights
        self.allow_untrained = allow_untrained
        self.arch = arch
        self.device_name = device
        self.scene_map_path = scene_map_path
        self.sift_path = sift_path  # None: the shipped sift list; "none": no extra classes
        self.max_albums = max_albums  # K: scene albums per photo at most
        self.cpu_bf16_setting = cpu_bf16  # auto | on | off: bf16 forward passes on a CPU
        self.cpu_bf16 = False
        self.cpu_bf16_why = ""
        self._keep: torch.Tensor | None = None
        self._lock = threading.RLock()
        self._net: SightlineNet | None = None
        self.meta: CheckpointMeta | None = None
        self.scene_map: SceneMap | None = None
        self.device = torch.device("cpu")

    @classmethod
    def from_settings(cls, settings: Settings) -> SceneLandmarkModel:
        """The model a process's settings ask for (weights, arch, device, map, sift)."""
        return cls(
            weights=settings.weights,
            allow_untrained=settings.allow_untrained,
            arch=settings.arch,
            device=settings.device,
            scene_map_path=settings.scene_map,
            sift_path=settings.sift,
            max_albums=settings.albums_per_photo,
            cpu_bf16=settings.cpu_bf16,
        )

    @property
    def loaded(self) -> bool:
        return self._net is not None

    @property
    def network(self) -> SightlineNet:
        """The loaded network (for benchmarks that time or compare the bare forward pass)."""
        self.load()
        assert self._net is not None
        return self._net

    @property
    def transform(self) -> InputTransform:
        self.load()
        assert self.meta is not None
        return self.meta.transform

    def load(self) -> None:
        """Load weights once per process; safe to call again."""
        if self._net is not None:
            return
        with self._lock:
            if self._net is not None:
                return
            try:
                net, meta = load_or_untrained(
                    self.weights, allow_untrained=self.allow_untrained, arch=self.arch
                )
            except NoWeights as exc:
                raise ModelUnavailable(
                    str(exc)
                    if self.weights
                    else "no weights: set SIGHTLINE_WEIGHTS to a sightline checkpoint, or "
                    "SIGHTLINE_ALLOW_UNTRAINED=1 to run an untrained network (demo, tests)"
                ) from None
            if not self.weights:
                # A log record (stderr, or a JSON line in JSON mode), not a bare print.
                log.warning(
                    "WARNING: sightline is running an UNTRAINED %s network: scene "
                    "labels and landmark matches are noise, not predictions.",
                    meta.arch,
                )
            # Classes the checkpoint never learnt stay out, and the setting may drop more.
            self.scene_map = SceneMap.for_checkpoint(meta, self.scene_map_path, sift=self.sift_path)
            self.device = self._pick_device()
            net = net.to(self.device).eval()
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True
                net = net.to(memory_format=torch.channels_last)
            if self.device.type == "cpu":
                self.cpu_bf16, self.cpu_bf16_why = resolve_cpu_bf16(self.cpu_bf16_setting)
            self._keep = torch.from_numpy(self.scene_map.keep()).to(self.device)
            self.meta = meta
            self._net = net
            if meta.scene_head.trained and not meta.serves_landmarks:
                log.warning(
                    "WARNING: the landmark embedding head of this checkpoint is untrained: "
                    "scene albums are served, landmark matching is off."
                )
            log.info(
                "model %s loaded on %s; %s", meta.model_version, self.device, meta.heads_line()
            )
            if self.device.type == "cpu":
                log.info(
                    "cpu bf16 (SIGHTLINE_CPU_BF16=%s): %s", self.cpu_bf16_setting, self.cpu_bf16_why
                )

    def describe(self) -> str:
        """One line: the model, its device, which heads are real, and the CPU precision."""
        self.load()
        assert self.meta is not None
        line = f"model {self.meta.model_version} on {self.device}; {self.meta.heads_line()}"
        if self.device.type == "cpu":
            line += f"; cpu bf16 (SIGHTLINE_CPU_BF16={self.cpu_bf16_setting}) {self.cpu_bf16_why}"
        return line

    def cpu_turn(self) -> Any:
        """A context for CPU-heavy work beside the network: the forward pass's own lock on
        a CPU device (so the two take turns at full width), nothing on a GPU."""
        self.load()
        return self._lock if self.device.type == "cpu" else nullcontext()

    def _pick_device(self) -> torch.device:
        """The device SIGHTLINE_DEVICE names; ModelUnavailable (one line, exit 2 from the CLI)
        for a CUDA device this machine lacks, which was torch's own RuntimeError."""
        if self.device_name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device_name)
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise ModelUnavailable(
                    f"SIGHTLINE_DEVICE={self.device_name}: no CUDA device is available here"
                )
            if device.index is not None and device.index >= count:
                raise ModelUnavailable(
                    f"SIGHTLINE_DEVICE={self.device_name}: this machine has {count} CUDA "
                    f"device(s), cuda:0 to cuda:{count - 1}"
                )
        return device

    @torch.inference_mode()
    def predict(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(N, classes) scene probabilities and (N, dim) unit embeddings, float32."""
        self.load()
        assert self._net is not None and self.meta is not None
        batch = self.meta.transform.to_batch(crops).to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            ctx = torch.autocast("cuda", dtype=dtype)
        else:
            ctx = cpu_autocast(self.cpu_bf16)
        with self._lock, ctx:  # batches in flight share one network: one forward at a time
            logits, emb = self._net(batch)
        # Softmax over the kept classes only: the sift classes get exactly 0.
        assert self._keep is not None
        probs = torch.softmax(logits.float().masked_fill(~self._keep, float("-inf")), dim=1)
        emb = torch.nn.functional.normalize(emb.float(), dim=1)
        return probs.cpu().numpy(), emb.cpu().numpy()
