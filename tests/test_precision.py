"""bf16 on the CPU: on by default only where the CPU has native bf16, what the worker then
serves, and the figures the bench builds on (FLOPs per image, fidelity)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from models.network import sightline_net
from models.precision import cpu_autocast, resolve_cpu_bf16
from models.throughput import compare_outputs, forward_flops
from sightline.samples import synthetic_jpeg
from workers.inference import SceneLandmarkModel
from workers.photos import decode


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\n")
    return path


@pytest.mark.parametrize(
    ("setting", "flags", "on", "why"),
    [
        ("auto", "avx512f avx512_bf16", True, "avx512_bf16"),
        ("auto", "amx_tile amx_bf16", True, "amx_bf16"),
        ("auto", "avx512f", False, "neither"),
        ("off", "avx512_bf16", False, "off by setting"),
        ("on", "avx512f", True, "emulated"),
    ],
)
def test_cpu_bf16_is_on_by_default_only_with_native_support(
    tmp_path, setting, flags, on, why
) -> None:
    """auto follows the CPU's flags; on and off override them, and the reason says which."""
    got, reason = resolve_cpu_bf16(setting, _cpuinfo(tmp_path, flags))
    assert got is on and why in reason


def test_unreadable_cpuinfo_means_no_bf16_and_bad_settings_are_refused(tmp_path) -> None:
    assert resolve_cpu_bf16("auto", tmp_path / "absent") == (
        False,
        "off: this CPU has neither avx512_bf16 nor amx_bf16",
    )
    with pytest.raises(ValueError, match="auto, on or off"):
        resolve_cpu_bf16("fast")


def test_worker_serves_bf16_close_to_fp32_but_not_equal() -> None:
    """With bf16 on, the worker's outputs differ from fp32 (bf16 really ran) yet the
    embeddings keep a cosine above 0.99 and the probabilities stay close."""
    photos = [synthetic_jpeg(width=160, height=120, seed=i) for i in range(4)]
    out = {}
    for setting in ("off", "on"):
        model = SceneLandmarkModel(
            weights=None, allow_untrained=True, arch="tiny", cpu_bf16=setting
        )
        t = model.transform
        out[setting] = model.predict([decode(p, resize=t.resize, crop=t.crop).crop for p in photos])
        assert model.cpu_bf16 is (setting == "on")
        assert f"SIGHTLINE_CPU_BF16={setting}" in model.describe()
    (p32, e32), (p16, e16) = out["off"], out["on"]
    assert not np.array_equal(e32, e16)
    assert (e32 * e16).sum(axis=1).min() > 0.99
    assert np.abs(p32 - p16).max() < 1e-3


def test_fidelity_of_a_pass_against_itself_is_exact_and_bf16_is_close() -> None:
    torch.manual_seed(0)
    net = sightline_net(arch="tiny", num_classes=20, embedding_dim=16).eval()
    x = torch.randn(6, 3, 64, 64)
    same = compare_outputs(net, x, nullcontext())
    assert same.logits_rel_error_max == 0 and same.top5_agreement == 1.0
    assert same.embedding_cosine_min == pytest.approx(1.0, abs=1e-6)
    bf16 = compare_outputs(net, x, cpu_autocast(True))
    assert 0 < bf16.logits_rel_error_max < 0.05 and bf16.embedding_cosine_min > 0.99


def test_wrn50_2_with_both_branches_costs_27_2_gflop_per_image() -> None:
    """The issue's 27.2 GFLOP, counted: 22.79 for the scene branch (torchvision's
    wide_resnet50_2) plus the landmark branch's own layer4 and head."""
    net = sightline_net(arch="wide_resnet50_2").eval()
    assert forward_flops(net, 224) / 1e9 == pytest.approx(27.21, abs=0.01)
