"""The two-branch network and its checkpoints (tiny arch, CPU)."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    untrained,
)
from models.network import sightline_net
from models.scenes import load_categories


class _Evil:
    """Stands for any object a malicious pickle would build."""


def _batch(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_forward_gives_logits_per_class_and_unit_embeddings() -> None:
    """Scene logits have one column per class; embeddings are unit length and dim wide."""
    net = sightline_net(arch="tiny", num_classes=7, embedding_dim=16).eval()
    logits, emb = net(_batch(3))
    assert logits.shape == (3, 7)
    assert emb.shape == (3, 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_branches_share_the_trunk_but_not_layer4() -> None:
    """The landmark branch has its own layer4 (trained further), the trunk is shared."""
    net = sightline_net(arch="tiny", num_classes=3, embedding_dim=8)
    assert net.scene_layer4 is not net.landmark_layer4
    a = dict(net.scene_layer4.named_parameters())
    b = dict(net.landmark_layer4.named_parameters())
    assert a.keys() == b.keys()
    assert all(a[k].data_ptr() != b[k].data_ptr() for k in a)


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown arch"):
        sightline_net(arch="resnet9000")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, suffix: str) -> None:
    """A saved checkpoint loads with its metadata and reproduces the outputs exactly."""
    net, meta = untrained(arch="tiny", categories=load_categories(), embedding_dim=32, seed=3)
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".safetensors":
        save_checkpoint(net, meta, path)
    else:
        torch.save({"state_dict": net.state_dict(), "meta": meta.to_json()}, path)
    loaded, lmeta = load_checkpoint(path)
    x = _batch()
    with torch.inference_mode():
        a, b = net(x), loaded(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert lmeta.categories == meta.categories and lmeta.embedding_dim == 32
    assert len(lmeta.sha256) == 64 and lmeta.model_version.startswith(meta.version + "+")
    assert lmeta.trained is False


def test_classifier_width_comes_from_the_checkpoint_categories(tmp_path) -> None:
    net, meta = untrained(arch="tiny", categories=("a", "b", "c"), embedding_dim=8)
    save_checkpoint(net, meta, tmp_path / "c.safetensors")
    loaded, _ = load_checkpoint(tmp_path / "c.safetensors")
    assert loaded.scene_fc.out_features == 3


@pytest.mark.parametrize(
    ("categories", "message"),
    [
        (("beach", "for\x00est"), "category 1 has a control character"),
        (("beach", "beach"), "category 1 repeats category 0: 'beach' looks like 'beach'"),
        (("beach", " "), "category 1 is not a class name"),
        (("beach", "alley "), "category 1 has white space around it"),
        (("beach", "for\x85est"), "category 1 has a control character"),  # C1
        (("beach", "for\u202eest"), "category 1 has a control character"),  # bidi override
        (("beach", "for\u2028est"), "category 1 has a control character"),  # line separator
        (("beach", "for\ud800est"), "category 1 has a control character"),  # lone surrogate
        (("caf\u00e9", "cafe\u0301"), r"category 1 repeats category 0: 'cafe\\u0301' looks"),
        (("forest", "forest\u200b"), "category 1 repeats category 0"),  # + zero-width space
        (("beach", "\u200b"), "category 1 shows nothing"),
        (("beach", "x" * 201), "category 1 is longer than 200 characters"),
    ],
)
def test_checkpoint_class_names_are_checked_at_load(tmp_path, categories, message) -> None:
    """Class names become scene rows: a NUL failed every batch's write, not the load."""
    net, meta = untrained(arch="tiny", categories=categories, embedding_dim=8)
    save_checkpoint(net, meta, tmp_path / "c.safetensors")
    for read in (load_checkpoint, read_meta):
        with pytest.raises(CheckpointError, match=message):
            read(tmp_path / "c.safetensors")


def test_format_characters_names_need_are_kept(tmp_path) -> None:
    """ZWNJ (Persian "coffee shop"), a ZWJ emoji sequence and a soft hyphen are text, not
    controls: such names load."""
    names = ("\u06a9\u0627\u0641\u06cc\u200c\u0634\u0627\u067e", "\U0001f468\u200d\U0001f373",
             "pho\u00adto")  # fmt: skip
    net, meta = untrained(arch="tiny", categories=names, embedding_dim=8)
    save_checkpoint(net, meta, tmp_path / "c.safetensors")
    assert read_meta(tmp_path / "c.safetensors").categories == names


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "cannot read checkpoint"), (b"garbage" * 10, "cannot read checkpoint")],
)
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_pickled_objects_are_never_loaded(tmp_path) -> None:
    """torch.load runs with weights_only: a pickle with arbitrary objects is refused."""
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": _Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def _bad_checkpoints(tmp_path) -> dict[str, tuple[object, str]]:
    """Files that are not serving checkpoints, each with (a regex of) its one-line reason."""
    from safetensors.torch import save_file

    (tmp_path / "folder.safetensors").mkdir()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))  # no sightline header
    save_file({"w": torch.zeros(2)}, str(tmp_path / "odd.safetensors"), metadata={
        "sightline": "{not json"})  # fmt: skip
    torch.save({"weights": {}}, tmp_path / "plain.pt")
    torch.save({"state_dict": {}, "meta": "[1, 2]"}, tmp_path / "listmeta.pt")
    (tmp_path / "notes.pt").write_text("shopping: milk, eggs\n")
    return {
        "missing": (tmp_path / "none.pt", "checkpoint not found"),
        "directory": (tmp_path / "folder.safetensors", "is a directory, not a checkpoint file"),
        "text": (tmp_path / "notes.pt", r"cannot read checkpoint \(not a safetensors"),
        "no metadata": (tmp_path / "bare.safetensors", "no sightline metadata"),
        "bad metadata": (tmp_path / "odd.safetensors", "unreadable sightline metadata"),
        "not our layout": (tmp_path / "plain.pt", "expected a dict with 'state_dict' and 'meta'"),
        "meta not an object": (tmp_path / "listmeta.pt", "unreadable sightline metadata"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "text", "no metadata", "bad metadata", "not our layout",
     "meta not an object"],
)  # fmt: skip
def test_load_checkpoint_and_read_meta_refuse_a_bad_file_alike(tmp_path, case: str) -> None:
    """The serving loader and the metadata reader read files one way: the same one-line
    reason, naming the file, for each file that is not a checkpoint."""
    path, reason = _bad_checkpoints(tmp_path)[case]
    with pytest.raises(CheckpointError, match=reason) as loaded:
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=reason) as read:
        read_meta(path)
    assert str(loaded.value) == str(read.value) and "\n" not in str(read.value)
    assert str(path) in str(read.value)


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        ({"crop": 0}, "transform needs 16 <= crop <= resize <= 2048 px, got crop 0"),
        ({"crop": 99_999, "resize": 100_000}, "got crop 99999 and resize 100000"),
        ({"crop": 300, "resize": 256}, "got crop 300 and resize 256"),
        ({"mean": [0.5, 0.5]}, "transform mean needs 3 finite values"),
        ({"std": [0.2, 0.0, 0.2]}, "0.001 <= std <= 1000"),
        ({"std": [0.2, float("nan"), 0.2]}, "transform std needs 3 finite values"),
        ({"std": [1e-50, 0.2, 0.2]}, "0.001 <= std <= 1000"),  # 0 in float32
        ({"mean": [1e39, 0.0, 0.0]}, "|mean| <= 1000"),  # infinity in float32
    ],
)
def test_a_transform_no_photo_can_be_served_at_is_refused_at_load(
    tmp_path, transform, message
) -> None:
    """A checkpoint's transform is metadata: crop 0 failed every photo in the worker, a crop
    of 99,999 took 22 GB for one photo; both loaded as if fine."""
    import json

    from safetensors.torch import load_file, save_file

    net, meta = untrained(arch="tiny", categories=load_categories(), embedding_dim=8)
    good = tmp_path / "good.safetensors"
    save_checkpoint(net, meta, good)
    data = json.loads(meta.to_json())
    data["transform"] = {**data["transform"], **transform}
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(good), str(bad), metadata={"sightline": json.dumps(data)})
    for read in (load_checkpoint, read_meta):
        with pytest.raises(CheckpointError, match=message.replace("(", r"\(")):
            read(bad)


def test_a_tensor_with_nan_is_refused_at_load(tmp_path) -> None:
    """NaN weights made every photo fail one by one ("the network gave NaN"); now the load
    refuses the file, naming the tensor."""
    net, meta = untrained(arch="tiny", categories=load_categories(), embedding_dim=8)
    with torch.no_grad():
        net.state_dict()["scene_fc.weight"].fill_(float("nan"))
    save_checkpoint(net, meta, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor scene_fc\.weight holds NaN or infinite"):
        load_checkpoint(tmp_path / "nan.safetensors")


def test_an_unknown_arch_or_a_tensor_that_does_not_fit_is_named_in_one_line(tmp_path) -> None:
    """An arch this version lacks was a bare ValueError (exit 1); a tensor of another shape
    said only "Error(s) in loading state_dict for SightlineNet:" on its first line."""
    import json

    from safetensors.torch import load_file, save_file

    net, meta = untrained(arch="tiny", categories=load_categories(), embedding_dim=8)
    good = tmp_path / "good.safetensors"
    save_checkpoint(net, meta, good)
    data = json.loads(meta.to_json())
    vit = tmp_path / "vit.safetensors"
    save_file(
        load_file(good), str(vit), metadata={"sightline": json.dumps({**data, "arch": "vit_h"})}
    )
    wide = tmp_path / "wide.safetensors"
    save_file(load_file(good), str(wide),
              metadata={"sightline": json.dumps({**data, "embedding_dim": 16})})  # fmt: skip
    with pytest.raises(CheckpointError, match="vit_h") as err:
        load_checkpoint(vit)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"size mismatch for embed_fc\.weight") as err:
        load_checkpoint(wide)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("flag", ["yes", "false", 1, None])
def test_a_head_whose_trained_flag_is_not_a_boolean_is_refused(tmp_path, flag) -> None:
    """`"trained": "false"` read as trained (bool of a non-empty string), so an untrained
    head's labels would have been written as a trained model's."""
    import json

    from safetensors.torch import load_file, save_file

    net, meta = untrained(arch="tiny", categories=load_categories(), embedding_dim=8)
    good = tmp_path / "good.safetensors"
    save_checkpoint(net, meta, good)
    data = json.loads(meta.to_json())
    data["heads"]["scene"]["trained"] = flag
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(good), str(bad), metadata={"sightline": json.dumps(data)})
    for read in (load_checkpoint, read_meta):
        with pytest.raises(CheckpointError, match="trained must be true or false"):
            read(bad)
    old = {k: v for k, v in data.items() if k != "heads"} | {"trained": flag}
    save_file(load_file(good), str(bad), metadata={"sightline": json.dumps(old)})
    with pytest.raises(CheckpointError, match="trained must be true or false"):
        read_meta(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "v\x00x"}, "has a control character"),  # the worker died at start
        ({"version": ""}, "non-empty text"),
        ({"version": 7}, "non-empty text"),
        ({"embedding_dim": 10_000_000_000}, "embedding_dim must be a whole number"),
        ({"embedding_dim": -5}, "embedding_dim must be a whole number"),
        ({"embedding_dim": "8"}, "embedding_dim must be a whole number"),
    ],
)
def test_a_version_or_width_no_row_can_hold_is_refused_at_load(tmp_path, change, message) -> None:
    """A NUL in the version loaded, then failed the worker's first write; a width of 10^10
    tried to allocate 20 TB before the weights were read."""
    import json

    from safetensors.torch import load_file, save_file

    net, meta = untrained(arch="tiny", categories=load_categories(), embedding_dim=8)
    good = tmp_path / "good.safetensors"
    save_checkpoint(net, meta, good)
    data = {**json.loads(meta.to_json()), **change}
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(good), str(bad), metadata={"sightline": json.dumps(data)})
    for read in (load_checkpoint, read_meta):
        with pytest.raises(CheckpointError, match=message) as err:
            read(bad)
        assert "\n" not in str(err.value) and "\x00" not in str(err.value)
