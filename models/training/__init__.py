"""Training and evaluation recipes of the seeds: pure torch (with torchvision and PIL for the
data sets); no S3, Postgres, Celery or settings."""

from models.training.data import DataError
from models.training.landmarks import LandmarkTrainConfig, train_landmarks
from models.training.loop import TrainingError
from models.training.pretrained import PretrainedError, load_pretrained
from models.training.scene import SceneTrainConfig, evaluate_scenes, train_scene

__all__ = [
    "DataError",
    "LandmarkTrainConfig",
    "PretrainedError",
    "SceneTrainConfig",
    "TrainingError",
    "evaluate_scenes",
    "load_pretrained",
    "train_landmarks",
    "train_scene",
]
