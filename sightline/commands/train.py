"""`sightline train scene|landmarks`: the seeds' training recipes (models/training/)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sightline.argtypes import loader_workers, non_negative_number, positive_int, positive_number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the scene model or the landmark branch")
    tsub = p.add_subparsers(dest="train_command", metavar="WHAT", required=True)

    s = tsub.add_parser("scene", help="fine-tune on a Places365-style image folder")
    s.add_argument("--data", required=True, type=Path, help="folder with train/ and val/")
    s.add_argument("--out", required=True, type=Path, help="run folder: state, metrics, export")
    s.add_argument("--init", type=Path, help="torchvision ImageNet or CSAIL Places365 weights")
    s.add_argument("--arch", default="wide_resnet50_2", help="wide_resnet50_2, resnet50, tiny")
    s.add_argument(
        "--epochs", type=positive_int, default=10, help="passes over train/ (default: 10)"
    )
    s.add_argument(
        "--lr", type=positive_number, default=0.01, help="SGD learning rate (default: 0.01)"
    )
    s.add_argument(
        "--weight-decay",
        type=non_negative_number,
        default=1e-4,
        help="SGD weight decay (default: 1e-4)",
    )
    s.add_argument(
        "--embedding-dim", type=int, default=512, help="landmark embedding size (default: 512)"
    )
    _common(s)
    s.set_defaults(func=train_scene_cmd)

    m = tsub.add_parser("landmarks", help="train the landmark branch from a scene checkpoint")
    m.add_argument("--data", required=True, type=Path, help="manifest CSV: path,landmark,stage")
    m.add_argument("--scene", required=True, type=Path, help="scene checkpoint to start from")
    m.add_argument("--out", required=True, type=Path, help="run folder: state, metrics, export")
    m.add_argument("--embedding-dim", type=int, help="default: the checkpoint's")
    m.add_argument(
        "--epochs-per-stage",
        type=positive_int,
        default=2,
        help="epochs of each curriculum stage of the manifest (default: 2)",
    )
    m.add_argument(
        "--lr-layer4",
        type=non_negative_number,
        default=1e-3,
        help="learning rate of layer4 (default: 1e-3)",
    )
    m.add_argument(
        "--lr-embed",
        type=non_negative_number,
        default=1e-2,
        help="learning rate of the embedding head (default: 1e-2)",
    )
    m.add_argument(
        "--lr-classifier",
        type=non_negative_number,
        default=1e-1,
        help="learning rate of the landmark classifier (default: 1e-1)",
    )
    m.add_argument(
        "--lr-center", type=non_negative_number, default=0.5, help="learning rate of the centers"
    )
    m.add_argument(
        "--center-weight", type=non_negative_number, default=0.1, help="center loss weight"
    )
    m.add_argument("--people", type=Path, help="folder of RGBA person cut-outs to paste")
    m.add_argument("--people-share", type=float, default=0.3, help="share of photos pasted")
    m.add_argument(
        "--keep-landmark-layer4",
        action="store_true",
        help="keep the checkpoint's landmark layer4 (default: start from the scene layer4)",
    )
    _common(m)
    m.set_defaults(func=train_landmarks_cmd)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch-size", type=positive_int, default=64, help="photos per batch (default: 64)"
    )
    p.add_argument(
        "--workers",
        type=loader_workers,
        default=min(8, os.cpu_count() or 1),
        help="data-loading processes (default: the CPUs, at most 8; 0 loads in this process)",
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda (default: SIGHTLINE_DEVICE)")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--max-steps", type=positive_int, help="at most this many batches per epoch")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed: same seed, same run (default: 0)"
    )
    p.add_argument("--version", help="version prefix written into the exported checkpoint")


def _progress(it: Any, desc: str, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, leave=False, disable=not sys.stderr.isatty())


def _log(line: str) -> None:
    print(line, flush=True)


def _check(args: argparse.Namespace) -> None:
    """The embedding width and version, before any data is read (CliError, one line); the
    numbers are refused by their argparse types (`--lr nan` trained to a NaN checkpoint)."""
    from models.checkpoint import embedding_dim_problem, version_problem
    from sightline.cli import CliError

    problem = None
    if args.embedding_dim is not None:
        problem = embedding_dim_problem(args.embedding_dim)
    if args.version is not None:
        problem = problem or version_problem(args.version)
    if problem:
        raise CliError(problem.replace("embedding_dim", "--embedding-dim"))


def train_scene_cmd(args: argparse.Namespace) -> int:
    from models.network import ARCHS
    from models.scenes import SceneMap, load_sift
    from models.training import DataError, PretrainedError, TrainingError
    from models.training.scene import SceneTrainConfig, train_scene
    from models.transforms import default_transform
    from sightline.cli import CliError
    from workers.settings import Settings

    _check(args)
    if args.arch not in ARCHS:
        raise CliError(f"unknown --arch {args.arch!r}; choose one of {', '.join(ARCHS)}")
    s = Settings.from_env()
    sm = SceneMap.load(s.scene_map, excluded=load_sift(s.sift))
    transform = default_transform(args.arch)
    cfg = SceneTrainConfig(
        data=args.data,
        out=args.out,
        scene_map=sm,
        arch=args.arch,
        init=args.init,
        embedding_dim=args.embedding_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        workers=args.workers,
        device=args.device or s.device,
        amp=not args.no_amp,
        transform=transform,
        resume=args.resume,
        max_steps=args.max_steps,
        seed=args.seed,
        version=args.version or "scene",
    )
    try:
        train_scene(cfg, log=_log, progress=_progress)
    except (DataError, PretrainedError, TrainingError) as exc:
        raise CliError(str(exc)) from exc
    return 0


def train_landmarks_cmd(args: argparse.Namespace) -> int:
    from models.training import DataError, TrainingError
    from models.training.landmarks import LandmarkTrainConfig, train_landmarks
    from sightline.cli import CliError
    from workers.settings import Settings

    _check(args)
    if not 0.0 <= args.people_share <= 1.0:
        raise CliError(f"--people-share must be within 0..1, got {args.people_share}")
    s = Settings.from_env()
    cfg = LandmarkTrainConfig(
        manifest=args.data,
        scene_checkpoint=args.scene,
        out=args.out,
        embedding_dim=args.embedding_dim,
        epochs_per_stage=args.epochs_per_stage,
        batch_size=args.batch_size,
        lr_layer4=args.lr_layer4,
        lr_embed=args.lr_embed,
        lr_classifier=args.lr_classifier,
        lr_center=args.lr_center,
        center_weight=args.center_weight,
        people=args.people,
        people_share=args.people_share,
        copy_layer4=not args.keep_landmark_layer4,
        workers=args.workers,
        device=args.device or s.device,
        amp=not args.no_amp,
        resume=args.resume,
        max_steps=args.max_steps,
        seed=args.seed,
        version=args.version or "landmarks",
    )
    try:
        train_landmarks(cfg, log=_log, progress=_progress)
    except (DataError, TrainingError) as exc:
        raise CliError(str(exc)) from exc
    return 0
