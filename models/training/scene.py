"""`train scene`: fine-tune the shared trunk and scene branch on a Places365-style folder.

SGD with momentum and a cosine learning-rate decay, the standard augmentation, mixed
precision on CUDA; after every epoch: validation errors with and without the scene map,
the training state (for --resume) and the exported worker checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from models.checkpoint import UNTRAINED, CheckpointMeta, HeadProvenance, save_checkpoint
from models.network import SightlineNet, sightline_net
from models.scenes import SceneMap
from models.training.data import ImageList, eval_transform, scan_image_folder, train_transform
from models.training.loop import (
    Log,
    MixedPrecision,
    Progress,
    TrainingError,
    TrainResult,
    load_state,
    no_progress,
    pick_device,
    save_state,
    write_metrics,
)
from models.training.losses import masked_cross_entropy
from models.training.metrics import ErrorMeter, keep_tensor
from models.training.pretrained import load_pretrained
from models.transforms import InputTransform

STATE_FILE = "scene_state.pt"
EXPORT_FILE = "scene.safetensors"
METRICS_FILE = "scene_metrics.jsonl"


@dataclass
class SceneTrainConfig:
    data: Path  # has train/ and val/ class folders
    out: Path
    scene_map: SceneMap  # its ``excluded`` is the sift: left out of training and prediction
    arch: str = "wide_resnet50_2"
    init: Path | None = None  # torchvision ImageNet or CSAIL Places365 weights
    embedding_dim: int = 512
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    workers: int = 8
    device: str = "auto"
    amp: bool = True
    transform: InputTransform = field(default_factory=InputTransform)
    resume: bool = False
    max_steps: int | None = None  # per epoch; for smoke runs
    seed: int = 0
    version: str = "scene"


def scene_logits(net: SightlineNet, images: Tensor) -> Tensor:
    """The scene branch alone (the landmark branch is not trained here)."""
    feats = net.scene_features(net.trunk(images))
    return net.scene_fc(torch.flatten(F.adaptive_avg_pool2d(feats, 1), 1))


@torch.inference_mode()
def evaluate_scenes(
    net: SightlineNet,
    loader: DataLoader,
    scene_map: SceneMap,
    device: torch.device,
    amp: MixedPrecision | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Top-1/top-5 error over the kept classes, and over the map's album labels."""
    net.eval()
    keep = keep_tensor(scene_map, device)
    meter = ErrorMeter(scene_map)
    amp = amp or MixedPrecision(device, enabled=False)
    for images, targets in progress(loader, "eval", len(loader)):
        images = images.to(device, non_blocking=True)
        with amp.autocast():
            logits = scene_logits(net, images)
        probs = torch.softmax(logits.float().masked_fill(~keep, float("-inf")), dim=1)
        meter.update(probs, targets)
    return meter.result()


def export_scene_checkpoint(
    net: SightlineNet, cfg: SceneTrainConfig, categories: tuple[str, ...], epoch: int
) -> Path:
    """The worker's checkpoint; the landmark branch starts as a copy of the scene layer4."""
    net.landmark_layer4.load_state_dict(net.scene_layer4.state_dict())
    meta = CheckpointMeta(
        arch=cfg.arch,
        categories=categories,
        embedding_dim=cfg.embedding_dim,
        version=f"{cfg.version}-{cfg.arch}-e{epoch}",
        transform=cfg.transform,
        # The landmark branch is a copy of the scene layer4 with a head no one trained yet.
        scene_head=HeadProvenance(
            trained=True, source=f"train scene run {cfg.out} version {cfg.version}-e{epoch}"
        ),
        embedding_head=UNTRAINED,
        excluded=tuple(sorted(cfg.scene_map.excluded)),
    )
    path = cfg.out / EXPORT_FILE
    save_checkpoint(net, meta, path)
    return path


def _loader(items, transform, cfg: SceneTrainConfig, *, train: bool, device, epoch: int = 0):
    g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    return DataLoader(
        ImageList(items, transform),
        batch_size=cfg.batch_size,
        shuffle=train,
        drop_last=train and len(items) >= cfg.batch_size,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        generator=g,
    )


def train_scene(
    cfg: SceneTrainConfig, log: Log = print, progress: Progress = no_progress
) -> TrainResult:
    """Run (or resume) scene training; returns the per-epoch metrics of the whole run."""
    sm = cfg.scene_map
    categories = sm.categories
    train_dir, val_dir = cfg.data / "train", cfg.data / "val"
    if not train_dir.is_dir():
        raise TrainingError(f"{cfg.data}: expected train/ (and val/) class folders")
    train_items = scan_image_folder(train_dir, categories, sm.excluded)
    val_items = scan_image_folder(val_dir, categories, sm.excluded) if val_dir.is_dir() else []
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    net = sightline_net(arch=cfg.arch, num_classes=len(categories), embedding_dim=cfg.embedding_dim)
    cfg.out.mkdir(parents=True, exist_ok=True)
    state_path = cfg.out / STATE_FILE
    params = [p for m in (net.trunk, net.scene_layer4, net.scene_fc) for p in m.parameters()]
    optimizer = torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    amp = MixedPrecision(device, cfg.amp)
    history: list[dict[str, Any]] = []
    start = 1
    if cfg.resume:
        state = load_state(state_path)
        if state["arch"] != cfg.arch:
            raise TrainingError(f"{state_path} is a {state['arch']} run, not {cfg.arch}")
        if list(state["excluded"]) != sorted(sm.excluded):
            raise TrainingError(f"{state_path} was trained with another sift list")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        amp.scaler.load_state_dict(state["scaler"])
        history = list(state["history"])
        start = int(state["epoch"]) + 1
        log(f"resuming {cfg.out} after epoch {start - 1}")
    elif cfg.init is not None:
        report = load_pretrained(net, cfg.init)
        log(f"init {cfg.init}: {report.tensors} tensors; classifier {report.classifier}")
    else:
        log("no --init weights: training from random initialisation")
    net.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        net = net.to(memory_format=torch.channels_last)
    keep = keep_tensor(sm, device)
    log(
        f"{len(train_items)} training and {len(val_items)} validation images, "
        f"{int(keep.sum())} classes kept of {len(categories)}, device {device}"
        + (f", autocast {amp.dtype}" if amp.enabled else "")
    )
    val_loader = _loader(val_items, eval_transform(cfg.transform), cfg, train=False, device=device)
    export: Path | None = cfg.out / EXPORT_FILE if (cfg.out / EXPORT_FILE).is_file() else None
    if start > cfg.epochs:
        log(f"nothing to do: {cfg.out} already has {start - 1} of {cfg.epochs} epochs")
    for epoch in range(start, cfg.epochs + 1):
        lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / cfg.epochs))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loader = _loader(
            train_items, train_transform(cfg.transform), cfg, train=True, device=device, epoch=epoch
        )
        net.train()
        total, seen = 0.0, 0
        steps = len(loader) if cfg.max_steps is None else min(len(loader), cfg.max_steps)
        for step, (images, targets) in enumerate(progress(loader, f"epoch {epoch}", steps)):
            if step >= steps:
                break
            images = images.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            targets = targets.to(device, non_blocking=True)
            with amp.autocast():
                logits = scene_logits(net, images)
            loss = masked_cross_entropy(logits, targets, keep)
            amp.step(loss, optimizer)
            total += float(loss.detach()) * len(targets)
            seen += len(targets)
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": total / max(seen, 1)}
        if val_items:
            row.update(evaluate_scenes(net, val_loader, sm, device, amp, progress))
        history.append(row)
        export = export_scene_checkpoint(net, cfg, categories, epoch)
        save_state(
            state_path,
            {
                "epoch": epoch,
                "arch": cfg.arch,
                "excluded": sorted(sm.excluded),
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": amp.scaler.state_dict(),
                "history": history,
            },
        )
        write_metrics(cfg.out / METRICS_FILE, history)
        log(json.dumps(row) + f"  -> {export}")
    return TrainResult(history, net.eval(), export)
