"""sightline's networks and maths: pure torch and numpy, no S3, Postgres or Celery."""

from models.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from models.landmarks import LandmarkIndex, Match, Thresholds
from models.network import ARCHS, SightlineNet, sightline_net
from models.scenes import SceneMap, SceneMapError, load_categories
from models.transforms import InputTransform

__all__ = [
    "ARCHS",
    "CheckpointError",
    "CheckpointMeta",
    "InputTransform",
    "LandmarkIndex",
    "Match",
    "SceneMap",
    "SceneMapError",
    "SightlineNet",
    "Thresholds",
    "load_categories",
    "load_checkpoint",
    "save_checkpoint",
    "sightline_net",
]
