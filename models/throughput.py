"""What the benchmarks measure about the network itself: FLOPs per image, the device's
matrix-product rate, model-only images/s, and how far a bf16 pass strays from fp32.

Pure torch; no settings, no I/O. Used by `sightline bench worker` and `models.bench_gpu`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def forward_flops(net: nn.Module, crop: int, device: torch.device | str = "cpu") -> int:
    """FLOPs of one image's forward pass (both branches), counted by torch's FlopCounterMode:
    convolutions and matrix products at 2 FLOPs per multiply-add; BatchNorm, ReLU and
    pooling are not counted. WRN-50-2 at 224 px gives 27.21 GFLOP (22.79 for the scene
    branch alone, as torchvision's wide_resnet50_2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, crop, crop, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    n: int = 2048,
    seconds: float = 1.0,
) -> float:
    """The best GFLOP/s of square ``n`` x ``n`` matrix products over about ``seconds``:
    the measured ceiling a model-only rate is compared with (2 n^3 FLOPs per product)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: allocations, kernel choice
    _sync(device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        dt = time.perf_counter() - t0
        best = max(best, 2 * n**3 / dt / 1e9)
        if time.perf_counter() > deadline:
            return best


def images_per_s(
    run: Callable[[], object], images: int, *, rounds: int, device: torch.device | str = "cpu"
) -> float:
    """Images/s of ``run`` (one batch of ``images``), over ``rounds`` timed calls after one
    untimed warm-up call."""
    device = torch.device(device)
    run()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(rounds):
        run()
    _sync(device)
    return images * rounds / (time.perf_counter() - t0)


@dataclass(frozen=True)
class Fidelity:
    """How a lower-precision pass compares with fp32 on the same weights and images."""

    logits_rel_error_max: float  # per image ||low - fp32|| / ||fp32|| of the scene logits
    embedding_cosine_min: float  # per image cosine of the unit embeddings
    top5_agreement: float  # mean share of fp32's top-5 classes also in low's top-5
    top1_agreement: float  # share of images with the same best class

    def to_dict(self) -> dict[str, float]:
        return {
            "logits_rel_error_max": round(self.logits_rel_error_max, 6),
            "embedding_cosine_min": round(self.embedding_cosine_min, 6),
            "top5_agreement": round(self.top5_agreement, 4),
            "top1_agreement": round(self.top1_agreement, 4),
        }


@torch.inference_mode()
def compare_outputs(
    net: nn.Module,
    batch: Tensor,
    low: AbstractContextManager,
    base: AbstractContextManager | None = None,
) -> Fidelity:
    """Run ``net`` on ``batch`` in fp32 (``base``, default none) and under ``low`` (e.g. a
    bf16 autocast context) and compare logits, embeddings and top-k classes."""
    with base or nullcontext():
        ref_logits, ref_emb = (t.float() for t in net(batch))
    with low:
        logits, emb = (t.float() for t in net(batch))
    rel = (logits - ref_logits).norm(dim=1) / ref_logits.norm(dim=1).clamp_min(1e-12)
    cos = torch.nn.functional.cosine_similarity(emb, ref_emb, dim=1)
    ref5, low5 = ref_logits.topk(5, dim=1).indices, logits.topk(5, dim=1).indices
    shared = (ref5[:, :, None] == low5[:, None, :]).any(dim=2).float().mean(dim=1)
    same1 = (ref5[:, 0] == low5[:, 0]).float()
    return Fidelity(
        logits_rel_error_max=float(rel.max()),
        embedding_cosine_min=float(cos.min()),
        top5_agreement=float(shared.mean()),
        top1_agreement=float(same1.mean()),
    )
