"""bf16 on the CPU: whether this CPU computes it natively, and the autocast context.

Native bf16 dot products come from AVX-512 BF16 (``avx512_bf16``, e.g. AMD Zen 4, Intel
Cooper Lake) or AMX (``amx_bf16``, Intel Sapphire Rapids and later); oneDNN runs
convolutions on them at about twice the fp32 rate. Elsewhere bf16 is emulated and slower,
so it is only on by default where the flags are present.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where it cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_support(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The flag that gives this CPU native bf16 (``avx512_bf16`` or ``amx_bf16``), or None."""
    flags = cpu_flags(cpuinfo)
    return next((f for f in BF16_FLAGS if f in flags), None)


def resolve_cpu_bf16(setting: str, cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[bool, str]:
    """(on, why) for a setting of ``auto`` (on where the CPU has native bf16), ``on`` or
    ``off``. Raises ValueError for another value."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"cpu bf16 setting must be auto, on or off, got {setting!r}")
    flag = cpu_bf16_support(cpuinfo)
    if setting == "off":
        return False, "off by setting"
    if setting == "on":
        return True, f"on by setting ({flag or 'no native bf16 flag: emulated, slower'})"
    if flag:
        return True, f"on: this CPU has {flag}"
    return False, "off: this CPU has neither avx512_bf16 nor amx_bf16"


def cpu_autocast(enabled: bool) -> AbstractContextManager:
    """The context a CPU forward pass runs in: bf16 autocast when enabled."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else nullcontext()
