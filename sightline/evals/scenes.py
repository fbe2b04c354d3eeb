"""`sightline eval scenes --data DIR`: top-1/top-5 error with and without the scene map."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from sightline.argtypes import loader_workers


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenes", help="top-1/top-5 scene error, with and without the scene map")
    p.add_argument("--data", required=True, type=Path, help="class folders (or a folder with val/)")
    p.add_argument("--weights", help="checkpoint (default: SIGHTLINE_WEIGHTS)")
    p.add_argument("--batch-size", type=int, default=64, help="photos per batch (default: 64)")
    p.add_argument(
        "--workers",
        type=loader_workers,
        default=min(4, os.cpu_count() or 1),  # more than the CPUs: torch warns, nothing gained
        help="data-loading processes (default: the CPUs, at most 4)",
    )
    p.add_argument("--device", help="auto, cpu, cuda (default: SIGHTLINE_DEVICE)")
    p.add_argument("--json", action="store_true", help="print the errors as one JSON object")
    p.set_defaults(func=eval_scenes)


def eval_scenes(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from models.scenes import SceneMap
    from models.training import DataError, TrainingError
    from models.training.data import ImageList, eval_transform, scan_image_folder
    from models.training.loop import MixedPrecision, pick_device
    from models.training.scene import evaluate_scenes
    from sightline.cli import CliError
    from sightline.loading import load_network
    from workers.settings import Settings

    if args.batch_size <= 0:
        raise CliError(f"--batch-size must be positive, got {args.batch_size}")
    s = Settings.from_env()
    net, meta = load_network(s, args.weights)
    sm = SceneMap.for_checkpoint(meta, s.scene_map, sift=s.sift)
    folder = args.data / "val" if (args.data / "val").is_dir() else args.data
    try:
        items = scan_image_folder(folder, meta.categories, sm.excluded)
        device = pick_device(args.device or s.device)
    except (DataError, TrainingError) as exc:
        raise CliError(str(exc)) from exc
    loader = DataLoader(
        ImageList(items, eval_transform(meta.transform)),
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    metrics = evaluate_scenes(net.to(device), loader, sm, device, MixedPrecision(device))
    # Scene errors measure the scene head only: its provenance is the one that matters.
    out = {
        "model_version": meta.model_version,
        "trained": meta.scene_head.trained,
        "heads": meta.heads(),
        "data": str(folder),
    }
    out.update(metrics)
    if args.json:
        print(json.dumps(out))
    else:
        if not meta.scene_head.trained:
            print("WARNING: untrained scene head: these errors measure noise")
        for k, v in out.items():
            print(f"{k:16} {v}")
    return 0
