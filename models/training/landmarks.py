"""`train landmarks`: the article's recipe on top of a scene checkpoint.

The scene model's trunk stays frozen; the landmark branch's ``layer4`` (a copy of the scene
``layer4`` to start with), the FC + BN embedding head and a classifier over the landmarks
plus one not-a-landmark class are trained with softmax loss plus center loss (computed on
the L2-normalised embedding the matcher uses; no center for not-a-landmark), with three
learning rates (layer4, embedding, classifier; the centers have a fourth). Curriculum:
stage k trains on every photo of stages <= k, in the manifest's stage order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from models.checkpoint import CheckpointMeta, HeadProvenance, load_checkpoint, save_checkpoint
from models.network import SightlineNet, sightline_net
from models.training.augment import PastePeople
from models.training.data import DataError, ImageList, read_manifest, train_transform
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
from models.training.losses import CenterLoss

STATE_FILE = "landmarks_state.pt"
EXPORT_FILE = "landmarks.safetensors"
CLASSES_FILE = "landmark_classes.json"
METRICS_FILE = "landmarks_metrics.jsonl"
NOT_A_LANDMARK_LABEL = 0


@dataclass
class LandmarkTrainConfig:
    manifest: Path
    scene_checkpoint: Path
    out: Path
    embedding_dim: int | None = None  # None: the checkpoint's
    epochs_per_stage: int = 2
    batch_size: int = 64
    lr_layer4: float = 1e-3
    lr_embed: float = 1e-2
    lr_classifier: float = 1e-1
    lr_center: float = 0.5
    center_weight: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    people: Path | None = None  # folder of RGBA person cut-outs
    people_share: float = 0.3
    copy_layer4: bool = True  # start the landmark layer4 from the scene layer4
    workers: int = 8
    device: str = "auto"
    amp: bool = True
    resume: bool = False
    max_steps: int | None = None  # per epoch; for smoke runs
    seed: int = 0
    version: str = "landmarks"


class LandmarkHead(nn.Module):
    """Training-only parts: the classifier and the class centers (cut off at export)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, num_classes)
        self.center = CenterLoss(num_classes, dim, ignore_index=NOT_A_LANDMARK_LABEL)


def trainable_modules(net: SightlineNet) -> list[nn.Module]:
    """What the recipe trains in the network: the landmark layer4 and the embedding head."""
    return [net.landmark_layer4, net.embed_fc, net.embed_bn]


def _prepare_net(cfg: LandmarkTrainConfig) -> tuple[SightlineNet, CheckpointMeta]:
    net, meta = load_checkpoint(cfg.scene_checkpoint)
    dim = cfg.embedding_dim or meta.embedding_dim
    if dim != meta.embedding_dim:  # a new head width: keep everything but the head
        fresh = sightline_net(arch=meta.arch, num_classes=len(meta.categories), embedding_dim=dim)
        state = {k: v for k, v in net.state_dict().items() if not k.startswith("embed_")}
        fresh.load_state_dict(state, strict=False)
        net, meta = fresh, replace(meta, embedding_dim=dim)
    if cfg.copy_layer4 and not cfg.resume:
        net.landmark_layer4.load_state_dict(net.scene_layer4.state_dict())
    for p in net.parameters():
        p.requires_grad_(False)
    for m in trainable_modules(net):
        for p in m.parameters():
            p.requires_grad_(True)
    return net, meta


def _set_modes(net: SightlineNet) -> None:
    net.eval()  # the frozen trunk keeps its BatchNorm statistics
    for m in trainable_modules(net):
        m.train()


def export_landmark_checkpoint(
    net: SightlineNet, meta: CheckpointMeta, cfg: LandmarkTrainConfig, tag: str
) -> Path:
    """The worker's checkpoint: the whole network, without classifier or centers. It is
    marked trained only if the scene checkpoint it grew from was."""
    version = f"{cfg.version}-{meta.arch}-{tag}"
    head = HeadProvenance(
        trained=meta.scene_head.trained,
        source=f"train landmarks run {cfg.out} version {version}"
        + ("" if meta.scene_head.trained else " on an untrained trunk"),
    )
    out_meta = replace(meta, version=version, embedding_head=head, sha256="")
    path = cfg.out / EXPORT_FILE
    save_checkpoint(net, out_meta, path)
    return path


def train_landmarks(
    cfg: LandmarkTrainConfig, log: Log = print, progress: Progress = no_progress
) -> TrainResult:
    """Run (or resume) the curriculum; returns the per-epoch metrics of the whole run."""
    if cfg.batch_size < 2:
        raise TrainingError("--batch-size must be at least 2 (BatchNorm in the head)")
    rows = read_manifest(cfg.manifest)
    missing = [r.path for r in rows if not r.path.is_file()]
    if missing:
        raise DataError(f"{len(missing)} manifest images are missing, e.g. {missing[0]}")
    landmarks = sorted({r.landmark for r in rows if r.landmark is not None})
    if not landmarks:
        raise DataError(f"{cfg.manifest}: no landmark photos, only not-a-landmark ones")
    label = {name: i + 1 for i, name in enumerate(landmarks)}
    stages = sorted({r.stage for r in rows})
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    net, meta = _prepare_net(cfg)
    head = LandmarkHead(meta.embedding_dim, len(landmarks) + 1)
    cfg.out.mkdir(parents=True, exist_ok=True)
    state_path = cfg.out / STATE_FILE
    optimizer = torch.optim.SGD(
        [
            {"params": list(net.landmark_layer4.parameters()), "lr": cfg.lr_layer4},
            {
                "params": [*net.embed_fc.parameters(), *net.embed_bn.parameters()],
                "lr": cfg.lr_embed,
            },
            {"params": list(head.classifier.parameters()), "lr": cfg.lr_classifier},
            {"params": list(head.center.parameters()), "lr": cfg.lr_center, "weight_decay": 0.0},
        ],
        lr=cfg.lr_embed,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
    amp = MixedPrecision(device, cfg.amp)
    history: list[dict[str, Any]] = []
    done = (-1, 0)  # (stage index, epoch) last completed
    if cfg.resume:
        state = load_state(state_path)
        if list(state["landmarks"]) != landmarks:
            raise TrainingError(f"{state_path} was trained on another set of landmarks")
        net.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        amp.scaler.load_state_dict(state["scaler"])
        history = list(state["history"])
        done = (int(state["stage_index"]), int(state["epoch"]))
        log(f"resuming {cfg.out} after stage {stages[done[0]]} epoch {done[1]}")
    net.to(device)
    head.to(device)
    people = PastePeople(cfg.people, cfg.people_share) if cfg.people else None
    (cfg.out / CLASSES_FILE).write_text(
        json.dumps({"not_a_landmark_label": NOT_A_LANDMARK_LABEL, "landmarks": landmarks})
    )
    log(
        f"{len(rows)} photos, {len(landmarks)} landmarks + not-a-landmark, stages {stages}, "
        f"device {device}" + (f", people augmentation on {cfg.people_share:.0%}" if people else "")
    )
    export: Path | None = cfg.out / EXPORT_FILE if (cfg.out / EXPORT_FILE).is_file() else None
    for si, stage in enumerate(stages):
        items = [
            (r.path, NOT_A_LANDMARK_LABEL if r.landmark is None else label[r.landmark])
            for r in rows
            if r.stage <= stage
        ]
        for epoch in range(1, cfg.epochs_per_stage + 1):
            if (si, epoch) <= done:
                continue
            g = torch.Generator().manual_seed(cfg.seed * 1000 + si * 100 + epoch)
            loader = DataLoader(
                ImageList(items, train_transform(meta.transform), before=people),
                batch_size=cfg.batch_size,
                shuffle=True,
                drop_last=len(items) >= cfg.batch_size,
                num_workers=cfg.workers,
                pin_memory=device.type == "cuda",
                generator=g,
            )
            row = _train_epoch(net, head, loader, optimizer, amp, cfg, device, progress, stage)
            row.update(stage=stage, epoch=epoch, images=len(items))
            history.append(row)
            export = export_landmark_checkpoint(net, meta, cfg, f"s{stage}e{epoch}")
            save_state(
                state_path,
                {
                    "stage_index": si,
                    "epoch": epoch,
                    "landmarks": landmarks,
                    "model": net.state_dict(),
                    "head": head.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": amp.scaler.state_dict(),
                    "history": history,
                },
            )
            write_metrics(cfg.out / METRICS_FILE, history)
            log(json.dumps(row) + f"  -> {export}")
    return TrainResult(history, net.eval(), export)


def _train_epoch(
    net: SightlineNet,
    head: LandmarkHead,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    amp: MixedPrecision,
    cfg: LandmarkTrainConfig,
    device: torch.device,
    progress: Progress,
    stage: int,
) -> dict[str, Any]:
    _set_modes(net)
    head.train()
    sums = {"loss": 0.0, "softmax_loss": 0.0, "center_loss": 0.0, "correct": 0.0}
    seen = 0
    steps = len(loader) if cfg.max_steps is None else min(len(loader), cfg.max_steps)
    for step, (images, targets) in enumerate(progress(loader, f"stage {stage}", steps)):
        if step >= steps:
            break
        if len(targets) < 2:  # BatchNorm cannot train on one sample
            continue
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with amp.autocast():
            with torch.no_grad():
                shared = net.trunk(images)
            feats = net.embed_features(shared)
            logits = head.classifier(feats)
        softmax_loss = F.cross_entropy(logits.float(), targets)
        center_loss = head.center(F.normalize(feats.float(), dim=1), targets)
        loss = softmax_loss + cfg.center_weight * center_loss
        amp.step(loss, optimizer)
        n = len(targets)
        seen += n
        sums["loss"] += float(loss.detach()) * n
        sums["softmax_loss"] += float(softmax_loss.detach()) * n
        sums["center_loss"] += float(center_loss.detach()) * n
        sums["correct"] += float((logits.argmax(dim=1) == targets).sum())
    return {
        "loss": sums["loss"] / max(seen, 1),
        "softmax_loss": sums["softmax_loss"] / max(seen, 1),
        "center_loss": sums["center_loss"] / max(seen, 1),
        "train_accuracy": sums["correct"] / max(seen, 1),
    }
