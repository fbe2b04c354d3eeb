"""Bad settings and inputs a new user tried: each stops with one line `sightline: error: …`
and exit status 2, never a traceback, a silent fallback or a clamp."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sightline.cli import main
from tests.support import run_cli
from workers.settings import ARCH_NAMES, Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _run(capsys, *argv: str) -> tuple[int, list[str], str]:
    """`sightline ARGV` in this process: (status, stderr lines, stdout)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    out = capsys.readouterr()
    return code, out.err.strip().splitlines(), out.out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SIGHTLINE_OPAQUE_KEYS", "maybe"),
        ("SIGHTLINE_DEVICE", "tpu"),
        ("SIGHTLINE_DEVICE", "cuda:x"),
        ("SIGHTLINE_ARCH", "nosuch"),
        ("SIGHTLINE_ALLOW_UNTRAINED", "maybe"),
        ("SIGHTLINE_BATCH_SIZE", "-3"),
        ("SIGHTLINE_BATCH_SIZE", "0"),
        ("SIGHTLINE_BATCH_SIZE", "1.5"),
        ("SIGHTLINE_ALBUMS_PER_PHOTO", "0"),
        ("SIGHTLINE_MAX_RETRIES", "-1"),
        ("SIGHTLINE_RETRY_BASE_S", "-2"),
        ("SIGHTLINE_BATCH_WAIT_MS", "-1"),
        ("SIGHTLINE_DB_TIMEOUT_S", "-5"),
        ("SIGHTLINE_S3_TIMEOUT_S", "0"),
        ("SIGHTLINE_MAX_PIXELS", "0"),
        ("SIGHTLINE_MAX_OBJECT_BYTES", "-1"),
        # each passed, then overflowed (OverflowError, exit 1), hung fetches or was 0
        ("SIGHTLINE_MAX_OBJECT_BYTES", "inf"),
        ("SIGHTLINE_MAX_OBJECT_BYTES", "0.5"),
        ("SIGHTLINE_BATCH_TIME_LIMIT_S", "inf"),
        ("SIGHTLINE_BATCH_TIME_LIMIT_S", "1e308"),
        ("SIGHTLINE_BATCH_WAIT_MS", "inf"),
        ("SIGHTLINE_MAX_RETRIES", "2000"),
        ("SIGHTLINE_DB_TIMEOUT_S", "inf"),
        ("SIGHTLINE_S3_TIMEOUT_S", "inf"),
        ("SIGHTLINE_RETRY_BASE_S", "nan"),
        # kombu took it as given: the worker crashed after its banner with a TypeError
        ("SIGHTLINE_BROKER_OPTIONS", '{"visibility_timeout": "abc"}'),
        ("SIGHTLINE_BROKER_OPTIONS", '{"polling_interval": -1}'),
        ("SIGHTLINE_LOG_LEVEL", "loud"),
    ],
)
def test_config_show_refuses_a_bad_setting_in_one_line(capsys, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    code, err, out = _run(capsys, "config", "show")
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"sightline: error: {variable} "), err
    assert repr(value) in err[0] and out == ""


def test_the_refusals_say_what_is_allowed(capsys, monkeypatch):
    monkeypatch.setenv("SIGHTLINE_DEVICE", "tpu")
    assert "auto, cpu, cuda or cuda:N" in _run(capsys, "config", "show")[1][0]
    monkeypatch.setenv("SIGHTLINE_DEVICE", "cpu")
    monkeypatch.setenv("SIGHTLINE_ARCH", "nosuch")
    assert "wide_resnet50_2, resnet50, tiny" in _run(capsys, "config", "show")[1][0]


def test_good_values_pass_unchanged(monkeypatch):
    for name, value in {
        "SIGHTLINE_DEVICE": "cuda:1",
        "SIGHTLINE_ARCH": "tiny",
        "SIGHTLINE_ALLOW_UNTRAINED": "Off",
        "SIGHTLINE_BATCH_SIZE": "3",
        "SIGHTLINE_MAX_RETRIES": "0",
        "SIGHTLINE_BATCH_WAIT_MS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    s = Settings.from_env()
    assert (s.device, s.arch, s.allow_untrained) == ("cuda:1", "tiny", False)
    assert (s.batch_size, s.max_retries, s.batch_wait_ms) == (3, 0, 0.0)
    for word, flag in [("1", True), ("yes", True), ("ON", True), ("no", False), ("0", False)]:
        monkeypatch.setenv("SIGHTLINE_ALLOW_UNTRAINED", word)
        assert Settings.from_env().allow_untrained is flag


def test_arch_names_match_the_networks_models_builds():
    from models.network import ARCHS

    assert ARCH_NAMES == ARCHS


def test_tag_with_an_unknown_arch_is_refused_before_loading(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SIGHTLINE_ARCH", "nosuch")
    monkeypatch.setenv("SIGHTLINE_ALLOW_UNTRAINED", "1")
    code, err, _ = _run(capsys, "tag", str(tmp_path / "x.jpg"))
    assert code == 2 and err == [
        "sightline: error: SIGHTLINE_ARCH must be one of wide_resnet50_2, resnet50, tiny, "
        "got 'nosuch'"
    ]


@pytest.mark.parametrize("flag", ["--batch-size", "--concurrency"])
@pytest.mark.parametrize("value", ["-3", "0", "two"])
def test_worker_flags_refuse_counts_below_one(capsys, flag, value):
    code, err, _ = _run(capsys, "worker", flag, value)
    assert code == 2
    assert err == [
        f"sightline: error: argument {flag}: must be a whole number >= 1, got {value!r} "
        "(see: sightline worker --help)"
    ]


def test_an_unknown_option_before_the_command_is_named(capsys):
    """`sightline --bogus` said a COMMAND was required, not which option it did not know."""
    code, err, _ = _run(capsys, "--bogus")
    assert code == 2
    assert err == ["sightline: error: unrecognized arguments: --bogus (a COMMAND comes first) "
                   "(see: sightline --help)"]  # fmt: skip


def test_events_parse_takes_bytes_that_are_not_utf8_as_not_json(capsys, tmp_path):
    path = tmp_path / "event.json"
    path.write_bytes(b'{"Records": "\xff\xfe caf\xe9"}')
    code, err, _ = _run(capsys, "events", "parse", str(path))
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"sightline: error: {path}: not JSON (")


def _readme_settings() -> set[str]:
    """The SIGHTLINE_* names in the README's configuration table (rows `| `NAME` |`)."""
    names: set[str] = set()
    for line in README.read_text().splitlines():
        if line.startswith("| `SIGHTLINE_"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`(SIGHTLINE_\w+)`", first_cell))
    return names


def test_config_show_lists_every_setting_in_the_readme(capsys, monkeypatch):
    monkeypatch.delenv("SIGHTLINE_DATA_DIR", raising=False)
    expected = _readme_settings()
    assert {"SIGHTLINE_DATA_DIR", "SIGHTLINE_MAX_EVENT_AGE", "SIGHTLINE_LOG_LEVEL"} <= expected
    code, err, out = _run(capsys, "config", "show", "--json")
    assert code == 0, err
    shown = {r["name"]: r for r in json.loads(out)["settings"]}
    assert expected - set(shown) == set()
    assert shown["SIGHTLINE_MAX_EVENT_AGE"] == {
        "name": "SIGHTLINE_MAX_EVENT_AGE",
        "value": "15d",
        "source": "default",
    }
    monkeypatch.setenv("SIGHTLINE_WEBHOOK_PUBLISH_THREADS", "4")
    _, _, out = _run(capsys, "config", "show", "--json")
    shown = {r["name"]: r for r in json.loads(out)["settings"]}
    assert (shown["SIGHTLINE_WEBHOOK_PUBLISH_THREADS"]["value"], "env") == (
        "4",
        shown["SIGHTLINE_WEBHOOK_PUBLISH_THREADS"]["source"],
    )


def _tiny_pt(path: Path) -> Path:
    from models.checkpoint import untrained

    model, meta = untrained(arch="tiny", categories=("a", "b"), embedding_dim=8)
    torch.save({"state_dict": model.state_dict(), "meta": meta.to_json()}, path)
    return path


def test_read_meta_reads_a_pt_checkpoint(capsys, tmp_path):
    from models.checkpoint import load_checkpoint, read_meta

    path = _tiny_pt(tmp_path / "tiny.pt")
    meta = read_meta(path)
    assert (meta.arch, meta.categories, meta.embedding_dim) == ("tiny", ("a", "b"), 8)
    assert meta.sha256 == load_checkpoint(path)[1].sha256
    code, err, out = _run(capsys, "weights", "show", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["arch"] == "tiny"


def test_a_pt_file_of_another_layout_is_one_line(capsys, tmp_path):
    path = tmp_path / "other.pt"
    torch.save([1, 2, 3], path)
    code, err, _ = _run(capsys, "weights", "show", str(path))
    assert code == 2
    assert err == [f"sightline: error: {path}: expected a dict with 'state_dict' and 'meta'"]


def test_weights_show_of_a_directory_says_so(capsys, tmp_path):
    code, err, _ = _run(capsys, "weights", "show", str(tmp_path))
    assert code == 2
    assert err == [f"sightline: error: {tmp_path}: is a directory, not a checkpoint file"]


def test_status_names_a_broken_checkpoint_once(tmp_path):
    from sightline.commands.status import _model_lines, model_report

    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\xff" * 64)
    lines = _model_lines(model_report(Settings(weights=str(path))))
    assert len(lines) == 1 and lines[0].count(str(path)) == 1, lines
    assert lines[0].startswith(f"model           {path}: cannot read checkpoint (")


def test_retag_scene_map_error_says_scene_map_once(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("just some notes\n")
    code, err, _ = _run(capsys, "retag", "--scene-map", str(notes))
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"sightline: error: scene map {notes}: ")
    assert err[0].count("scene map") == 1, err[0]


def test_empty_release_list_and_corrections_say_so_in_text_only(capsys, monkeypatch, db_url):
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert _run(capsys, "release", "list") == (0, [], "no releases\n")
    assert _run(capsys, "release", "list", "--json") == (0, [], "[]\n")
    assert _run(capsys, "corrections", "export") == (0, [], "no corrections\n")
    assert _run(capsys, "corrections", "export", "--json") == (0, [], "")


def test_an_error_from_a_dataloader_worker_is_its_own_last_line() -> None:
    """torch re-raises a worker process's error as "Caught DataError in DataLoader worker
    process 4." plus that process's traceback; the CLI printed all of it, or only that first
    line with no file named. Now the original error's message, which names the file."""
    from sightline.cli import one_line

    raised = ValueError(
        "Caught DataError in DataLoader worker process 4.\n"
        "Original Traceback (most recent call last):\n"
        '  File "/x/data.py", line 9, in __getitem__\n'
        "    raise DataError(...)\n"
        "models.training.data.DataError: cannot read image /d/beach/bad.jpg: cannot identify"
    )
    assert one_line(raised) == "cannot read image /d/beach/bad.jpg: cannot identify"
    assert one_line(ValueError("refused\nHINT: see the docs")) == "refused"


@pytest.mark.slow
def test_eval_names_the_photo_it_cannot_read(tmp_path) -> None:
    for name in ("forest_path", "beach"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(
                tmp_path / name / f"{i}.jpg"
            )
    (tmp_path / "beach" / "bad.jpg").write_bytes(b"not an image at all")
    untrained = {
        "SIGHTLINE_ALLOW_UNTRAINED": "1",
        "SIGHTLINE_ARCH": "tiny",
        "SIGHTLINE_WEIGHTS": "",
    }
    out = run_cli("eval", "scenes", "--data", str(tmp_path), env=untrained)
    assert out.returncode == 2
    err = [ln for ln in out.stderr.splitlines() if ln.startswith("sightline")]
    assert err == [f"sightline: error: cannot read image {tmp_path}/beach/bad.jpg: cannot "
                   f"identify image file '{tmp_path}/beach/bad.jpg'"], out.stderr  # fmt: skip


def test_a_heading_error_keeps_its_reason_line() -> None:
    """botocore puts the reason under "Parameter validation failed:"; `backfill s3://a?b`
    printed only the heading."""
    from botocore.exceptions import ParamValidationError

    from sightline.cli import one_line

    err = ParamValidationError(report='Invalid bucket name "a?b": Bucket name must match')
    assert one_line(err) == (
        'Parameter validation failed: Invalid bucket name "a?b": Bucket name must match'
    )


def test_jobs_list_limit_past_bigint_is_one_line(capsys, monkeypatch, db_url) -> None:
    """A --limit past bigint was the server's NumericValueOutOfRange, exit 1."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    code, err, out = _run(capsys, "jobs", "list", "--limit", str(10**20))
    assert (code, err, out) == (
        2,
        ["sightline: error: --limit must be 1 to 1,000,000, got 100000000000000000000"],
        "",
    )


def test_a_database_timeout_under_a_millisecond_is_one_not_off(db_url) -> None:
    """SIGHTLINE_DB_TIMEOUT_S=0.0004 became statement_timeout=0: no timeout at all."""
    from workers.db import connect

    conn = connect(db_url, timeout_s=0.0004)
    with conn.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == "1ms"
    conn.close()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_a_cuda_device_this_machine_lacks_is_one_line(capsys, monkeypatch, device) -> None:
    """`tag`, the worker and `bench worker` printed torch's "Found no NVIDIA driver" (exit 1)."""
    from workers.inference import ModelUnavailable, SceneLandmarkModel

    model = SceneLandmarkModel(weights=None, allow_untrained=True, arch="tiny", device=device)
    with pytest.raises(ModelUnavailable, match=f"SIGHTLINE_DEVICE={device}: no CUDA device"):
        model.load()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # prefork's children inherit the loaded network and the batcher's threads, and hung
        (["--pool", "prefork"], "argument --pool: invalid choice: 'prefork'"),
        # refused only after the model loaded, as Celery's BadParameter (exit 1)
        (["--loglevel", "loud"], "argument --loglevel: invalid choice: 'LOUD'"),
        (["--queues", ","], "--queues names no queue"),  # served a queue named ""
        (["--batch-wait-ms", "inf"], "must be a number of ms from 0 to 86400000"),  # Overflow
    ],
)
def test_worker_options_no_worker_can_use_are_one_line(capsys, argv, message) -> None:
    code, err, _ = _run(capsys, "worker", *argv)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_a_data_folder_the_embedded_server_cannot_use_is_one_line(tmp_path) -> None:
    """Another major version's folder was 19 lines of pg_ctl and a CalledProcessError; a
    data dir that is a file said only "File exists"."""
    from sightline.embedded import embedded_postgres
    from workers.db import DatabaseError

    (tmp_path / "pg18").mkdir()
    (tmp_path / "pg18" / "PG_VERSION").write_text("15\n")
    with pytest.raises(DatabaseError, match="holds a PostgreSQL 15 database"):
        embedded_postgres(tmp_path / "pg18")
    (tmp_path / "file").write_text("")
    with pytest.raises(DatabaseError, match=r"cannot use the data folder .*SIGHTLINE_DATA_DIR"):
        embedded_postgres(tmp_path / "file" / "pg18")


@pytest.mark.slow
def test_a_folder_initdb_refuses_is_one_line(tmp_path) -> None:
    """initdb refusing a non-empty folder printed embedded-postgres' 20-line record first."""
    (tmp_path / "pg18").mkdir(parents=True)
    (tmp_path / "pg18" / "junk").write_text("hello")
    tmp_path.chmod(0o755)
    done = run_cli("db", "serve", "--detach", env={"SIGHTLINE_DATA_DIR": str(tmp_path),
                                                   "DATABASE_URL": ""}, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"sightline: error: the embedded PostgreSQL in {tmp_path / 'pg18'} did not start "
        f'(initdb exit 1: initdb: error: directory "{tmp_path / "pg18"}" exists but is not '
        "empty); a half-made folder can be moved aside"
    ]


def test_a_bad_event_age_names_its_setting(capsys, monkeypatch) -> None:
    """`not an age: 'abc'` did not say which of --older-than and the setting it was."""
    monkeypatch.setenv("SIGHTLINE_MAX_EVENT_AGE", "abc")
    code, err, _ = _run(capsys, "purge", "--tombstones", "--older-than", "30d")
    assert (code, err) == (2, ["sightline: error: SIGHTLINE_MAX_EVENT_AGE: not an age: 'abc' "
                                "(use e.g. 30d, 12h, 90m)"])  # fmt: skip
    monkeypatch.delenv("SIGHTLINE_MAX_EVENT_AGE")
    code, err, _ = _run(capsys, "purge", "--tombstones", "--older-than", "soon")
    assert code == 2 and err[0].startswith("sightline: error: --older-than: not an age")
