"""sightline's networks and maths: pure torch and numpy, no S3, Postgres or Celery.

Names load on first use, so `import models.landmarks` (numpy only) does not pull torch in.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ARCHS": "models.network",
    "SightlineNet": "models.network",
    "sightline_net": "models.network",
    "CheckpointError": "models.checkpoint",
    "CheckpointMeta": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "save_checkpoint": "models.checkpoint",
    "LandmarkIndex": "models.landmarks",
    "Match": "models.landmarks",
    "Thresholds": "models.landmarks",
    "SceneMap": "models.scenes",
    "SceneMapError": "models.scenes",
    "load_categories": "models.scenes",
    "InputTransform": "models.transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
