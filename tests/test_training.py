"""The seeds' training recipes on tiny generated data sets (arch tiny, 64 px, CPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoint import load_checkpoint, save_checkpoint, untrained
from models.scenes import SceneMap, load_categories, load_sift
from models.training import (
    DataError,
    LandmarkTrainConfig,
    SceneTrainConfig,
    train_landmarks,
    train_scene,
)
from models.training.data import scan_image_folder
from models.transforms import default_transform
from tests.support import run_cli
from workers.inference import SceneLandmarkModel

TINY = default_transform("tiny")
# Distinct colours per class, so a few steps can learn them; aqueduct is a sift class.
SCENES = {
    "beach": (230, 200, 120),
    "forest_path": (30, 120, 40),
    "arena/hockey": (200, 200, 240),
    "bamboo_forest": (90, 170, 60),
    "aqueduct": (120, 120, 120),
}


def _photo(colour, rng: np.random.Generator, size: int = 80) -> Image.Image:
    noise = rng.normal(0, 30, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8))


def make_places(root: Path, train: int = 6, val: int = 2) -> Path:
    """train/ with nested sub-type folders, val/ in the dash-named "easy format" layout."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for name, colour in SCENES.items():
            folder = root / split / (name if split == "train" else name.replace("/", "-"))
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _photo(colour, rng).save(folder / f"{i}.jpg")
    return root


def _scene_cfg(data: Path, out: Path, **kw) -> SceneTrainConfig:
    base = dict(
        data=data,
        out=out,
        scene_map=SceneMap.load(excluded=load_sift()),
        arch="tiny",
        epochs=4,
        batch_size=6,
        lr=0.01,
        workers=0,
        transform=TINY,
        embedding_dim=16,
    )
    base.update(kw)
    return SceneTrainConfig(**base)


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> Path:
    return make_places(tmp_path_factory.mktemp("places"))


@pytest.fixture(scope="module")
def scene_run(places, tmp_path_factory):
    out = tmp_path_factory.mktemp("scene_run")
    logs: list[str] = []
    return _scene_cfg(places, out), train_scene(_scene_cfg(places, out), log=logs.append), logs


def _crops(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (TINY.crop, TINY.crop, 3), dtype=np.uint8) for _ in range(n)]


def test_image_folder_layouts_resolve_to_places_classes(places):
    """Nested and dash-named class folders both map to their Places365 class; sift is left out."""
    cats = load_categories()
    train = scan_image_folder(places / "train", cats, load_sift())
    val = scan_image_folder(places / "val", cats, load_sift())
    names = {cats[i] for _, i in train}
    assert names == {"beach", "forest_path", "arena/hockey", "bamboo_forest"}
    assert {cats[i] for _, i in val} == names and len(train) == 24


def test_a_folder_that_is_not_a_class_is_refused(tmp_path: Path):
    """An image folder named after no Places365 class gives a clear DataError."""
    (tmp_path / "moon_base").mkdir()
    _photo((0, 0, 0), np.random.default_rng(0)).save(tmp_path / "moon_base" / "a.jpg")
    with pytest.raises(DataError, match="'moon_base' is not a Places365 class"):
        scan_image_folder(tmp_path, load_categories())


def test_scene_training_loss_goes_down_and_reports_both_errors(scene_run):
    """Training loss falls over four epochs; each epoch reports errors with and without map."""
    _, result, logs = scene_run
    losses = [row["train_loss"] for row in result.history]
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert losses[-1] < 0.6 * losses[0]
    for row in result.history:
        assert row["images"] == 8 and row["top5_error"] <= row["top1_error"]
        assert row["map_top5_error"] <= row["map_top1_error"]
        for key in ("top1_error", "top5_error"):  # a count of misses over the 8 images
            assert row[key] * 8 == pytest.approx(round(row[key] * 8)), row
    assert any("24 training and 8 validation images, 314 classes kept" in ln for ln in logs)


def test_scene_export_loads_into_the_worker_with_identical_outputs(scene_run):
    """The exported checkpoint, served by SceneLandmarkModel (fp32), reproduces the trained
    net; its scene head is marked trained, its embedding head (never trained) untrained."""
    _, result, _ = scene_run
    model = SceneLandmarkModel(weights=str(result.export), device="cpu", cpu_bf16="off")
    probs, embs = model.predict(_crops())
    batch = TINY.to_batch(_crops())
    keep = torch.from_numpy(model.scene_map.keep())
    with torch.no_grad():
        logits, emb = result.net.cpu()(batch)
        want = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=1)
    np.testing.assert_allclose(probs, want.numpy(), atol=1e-6)
    np.testing.assert_allclose(embs, emb.numpy(), atol=1e-6)
    assert model.meta.scene_head.trained and not model.meta.embedding_head.trained
    assert "train scene run" in model.meta.scene_head.source
    assert set(model.meta.excluded) == load_sift()
    assert probs[:, ~model.scene_map.keep()].max() == 0.0


@pytest.mark.slow
def test_eval_scenes_reproduces_the_last_epochs_validation(scene_run, places):
    """`sightline eval scenes --json` on the export equals the run's last-epoch metrics."""
    _, result, _ = scene_run
    proc = run_cli(
        "eval",
        "scenes",
        "--data",
        str(places),
        "--weights",
        str(result.export),
        "--json",
        "--workers",
        "0",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    last = result.history[-1]
    for key in ("images", "top1_error", "top5_error", "map_top1_error", "map_top5_error"):
        assert out[key] == last[key], key
    assert out["trained"] is True


@pytest.mark.slow
def test_scene_training_resumes_from_the_saved_epoch(places, tmp_path: Path):
    """A second `train scene --resume` run continues after the saved epoch, without repeats."""
    args = [
        "train",
        "scene",
        "--data",
        str(places),
        "--out",
        str(tmp_path),
        "--arch",
        "tiny",
        "--batch-size",
        "6",
        "--workers",
        "0",
        "--embedding-dim",
        "16",
    ]
    first = run_cli(*args, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, "--epochs", "2", "--resume")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout and "after epoch 1" in second.stdout
    rows = [json.loads(ln) for ln in (tmp_path / "scene_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    _, meta = load_checkpoint(tmp_path / "scene.safetensors")
    assert meta.version == "scene-tiny-e2"


@pytest.mark.slow
def test_resume_without_a_saved_run_is_one_clear_error(places, tmp_path: Path):
    """--resume in an empty folder exits 2 with one line, no traceback."""
    proc = run_cli(
        "train",
        "scene",
        "--data",
        str(places),
        "--out",
        str(tmp_path / "none"),
        "--arch",
        "tiny",
        "--resume",
        "--workers",
        "0",
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("sightline: error: nothing to resume")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("what", "option", "message"),
    [
        # --workers -1 reached the DataLoader, whose ValueError came after the data scan
        ("scene", ["--workers", "-1"], "argument --workers: must be a whole number from 0 to 64"),
        ("landmarks", ["--workers", "-1"], "argument --workers: must be a whole number from 0"),
        # forked 100,000 data-loading processes until the machine ran out of memory
        ("scene", ["--workers", "100000"], "argument --workers: must be a whole number from 0"),
        # --lr nan trained to a NaN checkpoint and exited 0
        ("scene", ["--lr", "nan"], "argument --lr: must be a finite number above 0, got nan"),
        ("scene", ["--weight-decay", "inf"], "argument --weight-decay: must be a finite number"),
        ("landmarks", ["--lr-embed", "nan"], "argument --lr-embed: must be a finite number of 0"),
        ("scene", ["--epochs", "0"], "argument --epochs: must be a whole number >= 1"),
        # a width of 10^8 allocated before anything was checked
        ("scene", ["--embedding-dim", "100000000"], "--embedding-dim must be a whole number"),
        ("scene", ["--version", "v\x01"], "version 'v\\x01' has a control character"),
    ],
)
def test_an_option_no_run_can_use_is_one_clear_error(places, tmp_path: Path, what, option, message):
    extra = ["--scene", str(tmp_path / "none.safetensors")] if what == "landmarks" else []
    proc = run_cli("train", what, "--data", str(places), "--out", str(tmp_path), *extra, *option)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"sightline: error: {message}"), proc.stderr
    assert proc.stderr.count("\n") == 1


# ---------------------------------------------------------------------------- landmarks
LANDMARKS = [
    ("eiffel", (200, 50, 50), 1),
    ("kremlin", (50, 50, 200), 1),
    ("zwinger", (40, 200, 60), 2),
    (None, (128, 128, 128), 1),
]


def make_manifest(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(2)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, colour, stage in LANDMARKS:
        for i in range(per_class):
            rel = f"img/{name or 'none'}_{i}.jpg"
            _photo(colour, rng).save(root / rel)
            rows.append((rel, name or "-", stage))
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "landmark", "stage"])
        w.writerows(rows)
    return root / "manifest.csv"


def make_people(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    person = np.zeros((60, 20, 4), np.uint8)
    person[10:, 5:15] = (250, 210, 170, 255)
    Image.fromarray(person, "RGBA").save(root / "person.png")
    return root


def _landmark_cfg(manifest: Path, scene: Path, out: Path, **kw) -> LandmarkTrainConfig:
    base = dict(
        manifest=manifest,
        scene_checkpoint=scene,
        out=out,
        epochs_per_stage=3,
        batch_size=8,
        workers=0,
    )
    base.update(kw)
    return LandmarkTrainConfig(**base)


@pytest.fixture(scope="module")
def landmark_run(scene_run, tmp_path_factory):
    _, scene, _ = scene_run
    root = tmp_path_factory.mktemp("landmarks")
    manifest = make_manifest(root)
    cfg = _landmark_cfg(
        manifest, scene.export, root / "out", people=make_people(root / "people"), people_share=0.5
    )
    return cfg, train_landmarks(cfg, log=lambda _: None)


def test_landmark_curriculum_stage_k_trains_on_stages_up_to_k(landmark_run):
    """Stage 1 sees its 18 photos, stage 2 all 24; the loss falls within stage 1."""
    _, result = landmark_run
    rows = result.history
    assert [(r["stage"], r["epoch"], r["images"]) for r in rows] == [
        (1, 1, 18),
        (1, 2, 18),
        (1, 3, 18),
        (2, 1, 24),
        (2, 2, 24),
        (2, 3, 24),
    ]
    assert rows[2]["loss"] < rows[0]["loss"]


def test_landmark_training_changes_only_layer4_and_the_head(landmark_run, scene_run):
    """Trunk and scene branch stay bit-identical; landmark layer4 and FC+BN head move."""
    cfg, result = landmark_run
    scene_net, _ = load_checkpoint(cfg.scene_checkpoint)
    before, after = scene_net.state_dict(), load_checkpoint(result.export)[0].state_dict()
    for key, value in before.items():
        if key.startswith(("trunk.", "scene_")):
            assert torch.equal(value, after[key]), key
    assert not torch.equal(before["embed_fc.weight"], after["embed_fc.weight"])
    moved = [k for k in before if k.startswith("landmark_layer4.") and k.endswith("weight")]
    assert any(not torch.equal(before[k], after[k]) for k in moved)


def test_landmark_export_loads_into_the_worker_with_identical_embeddings(landmark_run):
    """The exported landmark checkpoint, served by the worker (fp32), gives the trained
    embeddings, and both heads are marked trained."""
    cfg, result = landmark_run
    model = SceneLandmarkModel(weights=str(result.export), device="cpu", cpu_bf16="off")
    _, embs = model.predict(_crops())
    with torch.no_grad():
        _, want = result.net.cpu()(TINY.to_batch(_crops()))
    np.testing.assert_allclose(embs, want.numpy(), atol=1e-6)
    assert model.meta.trained and "train landmarks run" in model.meta.embedding_head.source
    classes = json.loads((cfg.out / "landmark_classes.json").read_text())
    assert classes["landmarks"] == ["eiffel", "kremlin", "zwinger"]


def test_landmarks_from_an_untrained_scene_checkpoint_export_as_untrained(tmp_path: Path):
    """An export grown from an untrained scene network is marked untrained, not passed off."""
    net, meta = untrained(
        arch="tiny", categories=load_categories(), embedding_dim=16, transform=TINY
    )
    save_checkpoint(net, meta, tmp_path / "scene.safetensors")
    manifest = make_manifest(tmp_path / "data", per_class=2)
    cfg = _landmark_cfg(
        manifest, tmp_path / "scene.safetensors", tmp_path / "out", epochs_per_stage=1, max_steps=1
    )
    result = train_landmarks(cfg, log=lambda _: None)
    assert load_checkpoint(result.export)[1].trained is False


@pytest.mark.slow
def test_train_landmarks_cli_refuses_a_manifest_with_missing_images(tmp_path, scene_run):
    """A manifest naming absent files exits 2 with one line naming the count."""
    _, scene, _ = scene_run
    (tmp_path / "m.csv").write_text("path,landmark,stage\nnope.jpg,eiffel,1\n")
    proc = run_cli(
        "train",
        "landmarks",
        "--data",
        str(tmp_path / "m.csv"),
        "--scene",
        str(scene.export),
        "--out",
        str(tmp_path / "o"),
        "--workers",
        "0",
    )
    assert proc.returncode == 2
    assert "1 manifest images are missing" in proc.stderr and "Traceback" not in proc.stderr


def test_landmark_training_resumes_after_an_interruption(tmp_path: Path):
    """A run stopped after its first epoch resumes at the next one; no epoch runs twice."""
    net, meta = untrained(
        arch="tiny", categories=load_categories(), embedding_dim=16, transform=TINY
    )
    save_checkpoint(net, meta, tmp_path / "scene.safetensors")
    manifest = make_manifest(tmp_path / "data", per_class=2)
    cfg = _landmark_cfg(
        manifest, tmp_path / "scene.safetensors", tmp_path / "out", epochs_per_stage=2, max_steps=1
    )

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("{"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_landmarks(cfg, log=stop_after_first_epoch)
    logs: list[str] = []
    cfg.resume = True
    result = train_landmarks(cfg, log=logs.append)
    assert [(r["stage"], r["epoch"]) for r in result.history] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert any("after stage 1 epoch 1" in ln for ln in logs)
    assert sum(ln.startswith("{") for ln in logs) == 3


@pytest.mark.parametrize("name", ["mps", "bogus", "xla"])
def test_a_training_device_other_than_cpu_or_cuda_is_one_line(name: str) -> None:
    """--device mps was torch's RuntimeError ("not linked with support for mps"), exit 1."""
    from models.training import TrainingError
    from models.training.loop import pick_device

    with pytest.raises(
        TrainingError, match=f"--device must be auto, cpu, cuda or cuda:N, got '{name}'"
    ):
        pick_device(name)
    assert pick_device("cpu").type == "cpu"
