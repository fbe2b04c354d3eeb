"""models.bench_gpu runs where only torch, torchvision, numpy and Pillow are installed: it
imports nothing of the worker's stack, and a tiny CPU run prints every figure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT

# Made unimportable before the bench runs: any import of them raises ImportError.
FORBIDDEN = ("celery", "boto3", "botocore", "psycopg2", "exifread", "kombu")

_RUN = """
import json, runpy, sys
for name in {forbidden!r}:
    sys.modules[name] = None
sys.argv = ["bench_gpu", *{argv!r}]
try:
    runpy.run_module("models.bench_gpu", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("sightline", "workers", "handlers"))
print(json.dumps({{"loaded": loaded}}))
"""


@pytest.mark.slow
def test_bench_gpu_runs_on_cpu_without_the_worker_stack() -> None:
    """A tiny CPU run with celery, boto3, psycopg2 and exifread unimportable prints model
    rates with peak shares, and decode rates with the processes needed."""
    argv = ["--device", "cpu", "--arch", "tiny", "--batch-sizes", "2,4", "--rounds", "1",
            "--no-compile", "--photos", "2", "--width", "800", "--height", "600",
            "--decodes", "2", "--processes", "2", "--peak-seconds", "0.2", "--json",
            "--device-decode-batch", "3"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", _RUN.format(forbidden=FORBIDDEN, argv=argv)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result, modules = (json.loads(line) for line in out.stdout.splitlines()[-2:])
    assert modules["loaded"] == []
    assert [(r["batch"], r["mode"]) for r in result["model_only"]] == [(2, "eager"), (4, "eager")]
    assert all(r["images_per_s"] > 0 and r["peak_share"] > 0 for r in result["model_only"])
    assert result["gflop_per_image"] > 0 and result["bf16_matmul_peak_gflops"] > 0
    decode = result["decode"]
    assert decode["decodes_per_s_all_processes"] > 0 and decode["processes_to_feed_best_rate"] >= 1
    assert decode["device_decodes_per_s"] > 0 and decode["device_decode_batch"] == 3
