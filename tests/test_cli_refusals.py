"""CLI inputs checked before the work: one line `sightline: error: …`, exit 2, nothing left
half-done (backfill, embed, consume sqs, retag, weights, release import, status)."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import pytest

from sightline.cli import main
from tests.support import ROOT, run_cli, worker_env
from workers import jobs


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def notes(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping: milk, eggs\n")
    return path


def test_weights_refuse_a_text_file_as_not_a_checkpoint(capsys, notes, tmp_path) -> None:
    code, err = _run(capsys, "weights", "show", str(notes))
    assert code == 2
    assert err == [
        f"sightline: error: {notes}: cannot read checkpoint (not a safetensors or torch checkpoint)"
    ]
    out = tmp_path / "x.safetensors"
    code, err = _run(
        capsys, "weights", "import", str(notes), "--from", "csail-places365", "--out", str(out)
    )
    assert code == 2
    assert err == [f"sightline: error: {notes}: not a safetensors or torch checkpoint"]
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--crop", "0"], "got crop 0 and resize 256"),  # read as the default before
        (["--crop", "300"], "got crop 300 and resize 256"),
        (["--resize", "100000", "--crop", "99999"], "got crop 99999 and resize 100000"),
    ],
)
def test_weights_import_refuses_a_transform_no_photo_can_be_served_at(
    capsys, notes, tmp_path, flags, message
) -> None:
    out = tmp_path / "x.safetensors"
    code, err = _run(capsys, "weights", "import", str(notes), "--from", "torchvision",
                     "--out", str(out), *flags)  # fmt: skip
    assert code == 2 and len(err) == 1
    assert (
        err[0].startswith("sightline: error: --resize/--crop: transform needs")
        and message in err[0]
    )


def test_release_import_of_a_text_file_gives_no_pickle_advice(capsys, notes) -> None:
    from models.release import ReleaseError, load_release

    with pytest.raises(ReleaseError) as info:
        load_release(notes)
    assert str(info.value) == f"{notes}: not a sightline release file (not an .npz archive)"


@pytest.mark.parametrize("url", ["not-a-url", "https://sqs.us-east-1.amazonaws.com/queue"])
def test_consume_refuses_a_queue_that_is_not_a_url_before_the_broker(
    capsys, monkeypatch, url
) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    code, err = _run(capsys, "consume", "sqs", "--queue", url)
    assert code == 2
    assert err == [
        "sightline: error: --queue must be an SQS queue URL "
        f"(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), got {url!r}"
    ]


def test_consume_accepts_aws_and_local_queue_urls() -> None:
    from sightline.commands.consume import check_queue_url

    check_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/photo-events")
    check_queue_url("http://127.0.0.1:5123/123456789012/bf-events.fifo")


def test_backfill_refuses_bad_options_before_the_broker(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    missing = tmp_path / "missing.json"
    code, err = _run(capsys, "backfill", "--inventory", str(missing))
    assert code == 2 and err == [
        f"sightline: error: cannot read {missing}: No such file or directory"
    ]
    code, err = _run(capsys, "backfill", "s3://b", "--max-queue", "0")
    assert code == 2 and err == ["sightline: error: --page-size and --max-queue must be 1 or more"]
    code, err = _run(capsys, "backfill", "s3://b", "--failed-kind", "decode")
    assert code == 2 and err == ["sightline: error: --failed-kind goes with --failed"]


def test_embed_checks_the_out_folder_before_the_model(capsys, monkeypatch, notes, tmp_path):
    monkeypatch.setenv("SIGHTLINE_WEIGHTS", str(tmp_path / "no-such.safetensors"))
    out = tmp_path / "none" / "e.npy"
    code, err = _run(capsys, "embed", str(notes), "--out", str(out))
    # the folder is named, not the missing weights: the model was never loaded
    assert code == 2 and err == [f"sightline: error: --out {out}: no folder {out.parent}"]


def test_embed_writes_nothing_when_no_photo_embedded(capsys, monkeypatch, notes, tmp_path):
    monkeypatch.delenv("SIGHTLINE_WEIGHTS", raising=False)
    monkeypatch.setenv("SIGHTLINE_ALLOW_UNTRAINED", "1")
    monkeypatch.setenv("SIGHTLINE_ARCH", "tiny")
    out, names = tmp_path / "e.npy", tmp_path / "names.txt"
    code, err = _run(capsys, "embed", str(notes), "--out", str(out), "--names", str(names))
    assert code == 2 and [line for line in err if not line.startswith("WARNING: ")] == [
        f"sightline: error: {notes}: not an image (format not recognised); "
        f"no photo embedded; {out} not written"
    ]
    assert not out.exists() and not names.exists()


def test_fleet_retag_names_a_missing_release_before_the_broker(capsys, monkeypatch, db_url) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    code, err = _run(capsys, "retag", "--release", "nosuch")
    assert code == 2 and err == ["sightline: error: no release 'nosuch' is imported"]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (("--local", "--chunk-size", "5"), "--chunk-size and --wait are for the fleet re-tag"),
        (("--local", "--wait"), "--chunk-size and --wait are for the fleet re-tag"),
        (("--batch-size", "5"), "--batch-size is for --local"),
    ],
)
def test_retag_refuses_the_other_modes_options(capsys, monkeypatch, argv, line) -> None:
    """An option the chosen mode would ignore is refused in one line, before any database."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    code, err = _run(capsys, "retag", "--release", "A", *argv)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"sightline: error: {line}")


def _no_credentials(env: dict[str, str], tmp_path) -> dict[str, str]:
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["no-credentials", "no-endpoint"])
def test_backfill_fails_its_job_on_an_aws_error(
    db, db_url, redis_url, moto_endpoint, tmp_path, fault
) -> None:
    """No credentials or no endpoint: one line, exit 2, the job failed with the reason; the
    next backfill starts a new job rather than resuming it."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="bf-aws-fault")
    env = worker_env(db_url, redis_url, moto_endpoint)
    if fault == "no-credentials":
        env = _no_credentials(env, tmp_path)
    else:
        env["SIGHTLINE_S3_ENDPOINT_URL"] = "http://127.0.0.1:9"  # discard port: refused
    # run_cli would add back this process's AWS_* (moto's keys): the exact environment here
    out = subprocess.run(
        [sys.executable, "-m", "sightline", "backfill", "s3://bf-aws-fault"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "sightline: error: cannot list s3://bf-aws-fault"
    )
    assert "job" in lines[0] and "failed" in lines[0]
    with db, db.cursor() as cur:
        cur.execute("SELECT id FROM jobs WHERE kind = 'backfill' ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
        first = jobs.get(cur, ids[-1])
    assert first.state == "failed" and "cannot list" in (first.error or "")
    good = run_cli(
        "backfill", "s3://bf-aws-fault", "--json", env=worker_env(db_url, redis_url, moto_endpoint)
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["id"] != first.id


@pytest.mark.parametrize(
    "argv",
    [["release", "activate", "nosuch"], ["release", "retire", "nosuch"],
     ["release", "diff", "nosuch", "other"]],
    ids=["activate", "retire", "diff"],
)  # fmt: skip
def test_release_commands_refuse_an_unknown_version_in_one_line(
    capsys, monkeypatch, db_url, argv
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    code, err = _run(capsys, *argv)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("sightline: error: ") and "nosuch" in err[0], err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("bench", "writes", "--marginal-photos", "abc"), "invalid int value: 'abc'"),
        (("retag", "--chunk-size", "x"), "invalid int value: 'x'"),
        (("config",), "required"),
        (("nosuch",), "invalid choice"),
        (("backfill", "--failed-kind", "some"), "invalid choice"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, words) -> None:
    """argparse's own refusals are one line naming the command's --help, exit 2."""
    code, err = _run(capsys, *argv)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("sightline: error: ") and words in err[0], err
    assert err[0].endswith("--help)"), err


@pytest.mark.parametrize("count", ["-1", "10001", "99999999999999999999"])
def test_status_refuses_a_failure_count_out_of_range(capsys, count) -> None:
    """--failures is a LIMIT: one beyond bigint ended in "NumericValueOutOfRange"."""
    code, err = _run(capsys, "status", "--failures", count)
    assert (code, err) == (2, [f"sightline: error: --failures must be 0 to 10000, not {count}"])
