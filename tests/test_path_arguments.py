"""Every command that takes a file: a path that is missing, a folder, a file of the wrong kind
or an empty file stops it with exactly one line `sightline: error: …` naming the path, a
non-zero exit status, no traceback and nothing on stdout.

Untrained-network warnings (`WARNING: …`, lines the commands that load a network print
before they read their input) are not counted: they say what the model is, not what the
input was."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.centroids import build_centroids
from models.landmarks import Thresholds
from models.release import make_release, save_release
from sightline.cli import main
from sightline.samples import synthetic_jpeg
from tests.synthetic_landmarks import make_world, photos

DIM = 16
BAD = ("missing", "directory", "wrong kind", "empty")


@pytest.fixture
def good(tmp_path: Path) -> dict[str, str]:
    """Valid companions for the arguments that are not under test."""
    rng = np.random.default_rng(3)
    world = make_world(rng, [1, 1], dim=DIM)
    e, lab = photos(rng, world, [60, 60])
    cs = build_centroids(e, lab, min_cluster=50)
    release = make_release(
        version="r1",
        model_version="m1",
        thresholds=Thresholds(),
        landmarks=world.landmark_rows(),
        centroids=cs.centroids,
        centroid_landmarks=cs.labels,
    )
    save_release(release, tmp_path / "r1.npz")
    np.save(tmp_path / "E.npy", e.astype(np.float32))
    np.save(tmp_path / "L.npy", lab.astype(np.int64))
    (tmp_path / "landmarks.csv").write_text(
        "id,name,city,country,lat,lon\n"
        + "".join(f"{r['id']},{r['name']},{r['city']},XX,{r['lat']},{r['lon']}\n"
                  for r in world.landmark_rows())
    )  # fmt: skip
    (tmp_path / "p.jpg").write_bytes(synthetic_jpeg(width=64, height=48))
    (tmp_path / "out").mkdir()
    return {
        "release": str(tmp_path / "r1.npz"),
        "E": str(tmp_path / "E.npy"),
        "L": str(tmp_path / "L.npy"),
        "landmarks": str(tmp_path / "landmarks.csv"),
        "photo": str(tmp_path / "p.jpg"),
        "out": str(tmp_path / "out"),
    }


# (name, argv given the bad path and the good files, the bad kinds that apply)
Argv = Callable[[str, dict[str, str]], list[str]]
COMMANDS: list[tuple[str, Argv, tuple[str, ...]]] = [
    ("inspect", lambda p, g: ["inspect", p], BAD),
    ("tag", lambda p, g: ["tag", p], BAD),
    ("tag --release", lambda p, g: ["tag", g["photo"], "--release", p], BAD),
    ("embed", lambda p, g: ["embed", p, "--out", f"{g['out']}/e.npy"], BAD),
    ("embed --from", lambda p, g: ["embed", "--from", p, "--out", f"{g['out']}/e.npy"],
     ("missing", "directory", "empty")),
    ("explain", lambda p, g: ["explain", p, "--out", f"{g['out']}/cam.png"], BAD),
    ("explain --weights",
     lambda p, g: ["explain", g["photo"], "--out", f"{g['out']}/cam.png", "--weights", p], BAD),
    ("explain --centroids",
     lambda p, g: ["explain", g["photo"], "--out", f"{g['out']}/cam.png", "--centroids", p], BAD),
    ("weights show", lambda p, g: ["weights", "show", p], BAD),
    ("weights import",
     lambda p, g: ["weights", "import", p, "--from", "torchvision",
                   "--out", f"{g['out']}/w.safetensors"],
     BAD),
    ("release import", lambda p, g: ["release", "import", p], BAD),
    ("events parse", lambda p, g: ["events", "parse", p], BAD),
    ("scenes --map", lambda p, g: ["scenes", "--map", p], BAD),
    ("scenes --sift", lambda p, g: ["scenes", "--sift", p], ("missing", "directory", "wrong kind")),
    ("centroids build",
     lambda p, g: ["centroids", "build", "--embeddings", p, "--labels", g["L"],
                   "--landmarks", g["landmarks"], "--model-version", "m1",
                   "--out", f"{g['out']}/r.npz"], BAD),
    ("centroids build --landmarks",
     lambda p, g: ["centroids", "build", "--embeddings", g["E"], "--labels", g["L"],
                   "--landmarks", p, "--model-version", "m1",
                   "--out", f"{g['out']}/r.npz"], BAD),
    ("clean",
     lambda p, g: ["clean", "--embeddings", g["E"], "--labels", g["L"], "--references", p,
                   "--reference-labels", g["L"], "--threshold", "0.5",
                   "--out", f"{g['out']}/k.npy"], BAD),
    ("match", lambda p, g: ["match", "--release", p, "--embeddings", g["E"]], BAD),
    ("match --embeddings", lambda p, g: ["match", "--release", g["release"], "--embeddings", p],
     BAD),
    ("calibrate",
     lambda p, g: ["calibrate", "--release", p, "--embeddings", g["E"], "--labels", g["L"],
                   "--out", f"{g['out']}/c.npz"], BAD),
    ("calibrate --corrections",
     lambda p, g: ["calibrate", "--release", g["release"], "--corrections", p,
                   "--out", f"{g['out']}/c.npz"], BAD),
    ("eval landmarks",
     lambda p, g: ["eval", "landmarks", "--release", p, "--embeddings", g["E"],
                   "--labels", g["L"]], BAD),
    ("backfill --inventory", lambda p, g: ["backfill", "--inventory", p], BAD),
]  # fmt: skip

CASES = [(name, argv, kind) for name, argv, kinds in COMMANDS for kind in kinds]


def _bad_path(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / "bad" / f"{kind.replace(' ', '_')}.dat"
    path.parent.mkdir(exist_ok=True)
    if kind == "directory":
        path.mkdir()
    elif kind == "wrong kind":
        path.write_text("shopping: milk, eggs\n")
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize(("name", "argv", "kind"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_a_bad_path_is_one_error_line_naming_it(
    name, argv, kind, good, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("SIGHTLINE_ALLOW_UNTRAINED", "1")
    monkeypatch.setenv("SIGHTLINE_ARCH", "tiny")
    monkeypatch.delenv("SIGHTLINE_WEIGHTS", raising=False)
    monkeypatch.delenv("SIGHTLINE_DEBUG", raising=False)
    monkeypatch.delenv("SIGHTLINE_LOG_FORMAT", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # refused before any broker
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # nor a DB
    bad = _bad_path(kind, tmp_path)
    try:
        code = main(argv(str(bad), good))
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    out = capsys.readouterr()
    lines = [ln for ln in out.err.splitlines() if not ln.startswith("WARNING: ")]
    assert code not in (0, None), (out.out, out.err)
    assert len(lines) == 1 and lines[0].startswith("sightline: error: "), out.err
    assert str(bad) in lines[0], lines[0]
    assert "Traceback" not in out.err and out.out == "", out.out


def test_inspect_json_keeps_the_error_on_stdout(tmp_path, capsys) -> None:
    """With --json the one error is the JSON object on stdout, stderr stays empty."""
    bad = _bad_path("wrong kind", tmp_path)
    code = main(["inspect", str(bad), "--json"])
    out = capsys.readouterr()
    assert code == 2 and out.err == ""
    assert "not an image" in json.loads(out.out)["error"]


def _tiny(monkeypatch) -> None:
    monkeypatch.setenv("SIGHTLINE_ALLOW_UNTRAINED", "1")
    monkeypatch.setenv("SIGHTLINE_ARCH", "tiny")
    monkeypatch.setenv("SIGHTLINE_BATCH_SIZE", "2")
    monkeypatch.delenv("SIGHTLINE_WEIGHTS", raising=False)


def test_tag_text_puts_tags_on_stdout_and_each_error_on_stderr(good, tmp_path, capsys, monkeypatch):
    """Text mode: each good photo's tags on stdout; each bad one, one error line on stderr
    naming it, in input order; exit 2 when any failed."""
    _tiny(monkeypatch)
    bad = [_bad_path(kind, tmp_path) for kind in ("wrong kind", "missing")]
    code = main(["tag", str(bad[0]), good["photo"], str(bad[1])])
    out = capsys.readouterr()
    errors = [ln for ln in out.err.splitlines() if not ln.startswith("WARNING: ")]
    assert code == 2
    assert errors == [
        f"sightline: error: {bad[0]}: not an image (format not recognised)",
        f"sightline: error: {bad[1]}: cannot read: No such file or directory",
    ]
    assert out.out.startswith(f"{good['photo']}: ") and "error" not in out.out
    assert not any(str(b) in out.out for b in bad)


def test_embed_names_each_skipped_photo_then_what_was_not_written(
    good, tmp_path, capsys, monkeypatch
):
    """Several bad photos and none good: a line per photo, then one saying nothing was
    written; with a good photo among them the bad ones are skipped and E.npy is written."""
    _tiny(monkeypatch)
    bad = [_bad_path(kind, tmp_path) for kind in ("wrong kind", "empty")]
    out_path = tmp_path / "out" / "emb.npy"
    code = main(["embed", *map(str, bad), "--out", str(out_path)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("WARNING: ")]
    assert code == 2 and not out_path.exists()
    assert err == [
        f"sightline: error: {bad[0]}: skipped: not an image (format not recognised)",
        f"sightline: error: {bad[1]}: skipped: empty file",
        f"sightline: error: no photo embedded; {out_path} not written",
    ]
    code = main(["embed", str(bad[0]), good["photo"], "--out", str(out_path)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("WARNING: ")]
    assert code == 2 and np.load(out_path).shape[0] == 1
    assert err == [f"sightline: error: {bad[0]}: skipped: not an image (format not recognised)"]


def test_a_photo_error_follows_the_json_log_format(tmp_path, capsys, monkeypatch) -> None:
    """SIGHTLINE_LOG_FORMAT=json: the one error line is a JSON log line, as main()'s are."""
    monkeypatch.setenv("SIGHTLINE_LOG_FORMAT", "json")
    bad = _bad_path("empty", tmp_path)
    code = main(["inspect", str(bad)])
    [line] = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert code == 2 and record["level"] == "ERROR"
    assert record["message"] == f"sightline: error: {bad}: empty file"


@pytest.mark.parametrize(
    "argv",
    [
        lambda g: ["centroids", "build", "--embeddings", g["E"], "--labels", g["L"],
                   "--landmarks", g["landmarks"], "--model-version", "m1",
                   "--out", f"{g['out']}/no/such/folder/r.npz"],
        lambda g: ["clean", "--embeddings", g["E"], "--labels", g["L"], "--references", g["E"],
                   "--reference-labels", g["L"], "--threshold", "0.5",
                   "--out", f"{g['out']}/no/such/folder/k.npy"],
    ],
    ids=["centroids build", "clean"],
)  # fmt: skip
def test_an_output_into_a_missing_folder_is_one_error_line(argv, good, capsys) -> None:
    """--out into a folder that does not exist: one line naming the path, exit 2."""
    assert main(argv(good)) == 2
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        f"sightline: error: {good['out']}/no/such/folder/"
        f"{'r.npz' if 'build' in argv(good) else 'k.npy'}: No such file or directory"
    ]


def test_clean_writes_exactly_the_named_file_and_square_km_must_be_positive(good, capsys) -> None:
    """`clean --out keep.bin` writes keep.bin (not keep.bin.npy); --square-km ≤ 0 is refused."""
    out = f"{good['out']}/keep.bin"
    argv = ["clean", "--embeddings", good["E"], "--labels", good["L"], "--references",
            good["E"], "--reference-labels", good["L"], "--threshold", "0.5",
            "--out", out]  # fmt: skip
    assert main(argv) == 0
    assert Path(out).exists() and not Path(out + ".npy").exists()
    assert np.load(out).dtype == bool
    capsys.readouterr()
    for bad in ("-1", "0", "nan"):
        argv = ["centroids", "build", "--embeddings", good["E"], "--labels", good["L"],
                "--landmarks", good["landmarks"], "--model-version", "m1", "--square-km", bad,
                "--out", f"{good['out']}/r.npz"]  # fmt: skip
        assert main(argv) == 2
        assert capsys.readouterr().err == (
            f"sightline: error: --square-km must be more than 0 km, not {float(bad)}\n"
        )
    assert not Path(f"{good['out']}/r.npz").exists()
