"""The handler stays light: importing it loads no torch, PIL, numpy, boto3 or even Celery,
and none of the packages the handler image leaves out (workers/, models/, sightline/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT

HEAVY = ("torch", "torchvision", "PIL", "numpy", "boto3", "botocore", "celery", "kombu",
         "workers", "models", "sightline")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    ["handlers.lambda_function", "handlers.webhook", "handlers.sqs_consumer", "handlers.asgi"],
)
def test_importing_the_handler_loads_nothing_heavy(module: str) -> None:
    """A fresh interpreter importing the entry point has none of the heavy packages loaded."""
    code = (
        f"import json, sys; import {module};"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert module.split(".")[0] in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    # -X importtime lists every module imported; none of them may be under a heavy package.
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert imported.isdisjoint(HEAVY)
