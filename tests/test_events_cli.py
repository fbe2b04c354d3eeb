"""`sightline events parse`: the handler's own plan, printed for operators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "events"


@pytest.mark.slow
def test_events_parse_prints_the_handlers_plan() -> None:
    """`sightline events parse` prints one JSON line per record, from a file or stdin."""
    done = run_cli("events", "parse", str(FIXTURES / "sqs_ordering.json"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(x["action"], x["message_id"]) for x in lines] == [
        ("tag", "msg-a"),
        ("ignore", "msg-a-again"),
        ("ignore", "msg-old"),
        ("delete", "msg-new"),
    ]
    piped = run_cli("events", "parse", "-", stdin=(FIXTURES / "minio_put.json").read_text())
    assert json.loads(piped.stdout)["key"] == "users/carol/Sommer + See/über.jpg"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["events", "parse", "/nonexistent.json"], None, "cannot read"),
        (["events", "parse", "-"], "{not json", "not JSON"),
        (["events", "parse", "-"], "[1, 2]", "an event is a JSON object"),
        (["events", "parse", "-"], "[" * 100_000 + "]" * 100_000, "JSON nested too deep"),
    ],
)
def test_events_parse_bad_input_is_one_line(
    args: list[str], stdin: str | None, message: str
) -> None:
    """Bad input to `events parse` is a one-line error with exit status 2."""
    done = run_cli(*args, stdin=stdin)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
