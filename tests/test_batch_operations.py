"""S3 Batch Operations invocations (schema 1.0 and 2.0) through the Lambda entry point: tasks
on a real Redis, one result code per task, failures answered rather than raised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.batch_operations import handle, is_batch_operations
from handlers.rules import Exclusions, OwnerRule
from tests.support import ROOT
from tests.test_handler_brokers import drain, free_port


def _invocation(schema: str) -> dict:
    def where(bucket: str) -> dict:
        return (
            {"s3Bucket": bucket} if schema == "2.0" else {"s3BucketArn": f"arn:aws:s3:::{bucket}"}
        )

    job = {"id": "job-1"} | ({"userArguments": {"k": "v"}} if schema == "2.0" else {})
    return {
        "invocationSchemaVersion": schema,
        "invocationId": "inv-1",
        "job": job,
        "tasks": [
            {"taskId": "t1", "s3Key": "users/ann/My+Photo%2B1+%28%C3%A9%29.jpg",
             "s3VersionId": "v7", **where("pics")},
            {"taskId": "t2", "s3Key": "users/ann/notes.txt", "s3VersionId": None, **where("pics")},
            {"taskId": "t3", "s3Key": "users/ann/.thumbnails/1.jpg", **where("pics")},
            {"taskId": "t4", "s3Key": "", **where("pics")},
            {"taskId": "t5", "s3Key": "elsewhere/x.jpg", **where("pics")},
            {"taskId": "t6", "s3Key": "users/ann/" + "x" * 1100 + ".jpg", **where("pics")},
            "not a task",
        ],
    }  # fmt: skip


def _lambda(event: dict, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    code = (
        "import json, sys; from handlers.lambda_function import handler;"
        "print(json.dumps(handler(json.load(open(sys.argv[1])), None)))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _codes(answer: dict) -> dict[str, tuple[str, str]]:
    return {r["taskId"]: (r["resultCode"], r["resultString"]) for r in answer["results"]}


@pytest.mark.parametrize("schema", ["1.0", "2.0"])
@pytest.mark.slow
def test_batch_operations_publish_and_answer_per_task(schema, redis_url, tmp_path) -> None:
    """An image publishes the task an upload would (key decoded, version kept, owner from the
    key) and Succeeds; ignored objects Succeed with the reason; a task with no key fails for
    good."""
    env = {"CELERY_BROKER_URL": redis_url, "SIGHTLINE_EXCLUDE": "*/.thumbnails/*"}
    done = _lambda(_invocation(schema), env, tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["invocationSchemaVersion"], answer["invocationId"]) == (schema, "inv-1")
    assert answer["treatMissingKeysAs"] == "PermanentFailure"
    codes = _codes(answer)
    assert codes["t1"] == ("Succeeded", "published")
    assert codes["t2"] == ("Succeeded", "ignored: not an image extension (.txt)")
    assert codes["t3"] == ("Succeeded", "ignored: excluded by SIGHTLINE_EXCLUDE (*/.thumbnails/*)")
    assert codes["t4"] == ("PermanentFailure", "record has no object key")
    assert codes["t5"] == ("Succeeded", "ignored: key outside the owner pattern")
    assert codes["t6"][0] == "PermanentFailure"
    assert codes["t6"][1].startswith("object key is longer than S3's 1024 bytes")
    assert len(answer["results"]) == 7  # one a task, the string too
    assert answer["results"][-1] == {"taskId": "", "resultCode": "PermanentFailure",
                                     "resultString": "task is not a JSON object"}  # fmt: skip
    [(headers, body)] = drain(redis_url, "tag", 1)
    assert headers["task"] == "sightline.tag"
    task = body[1]
    assert (task["bucket"], task["key"], task["version_id"], task["owner"]) == (
        "pics", "users/ann/My Photo+1 (é).jpg", "v7", "ann"
    )  # fmt: skip


@pytest.mark.slow
def test_batch_operations_broker_down_is_a_temporary_failure(tmp_path) -> None:
    """With the broker down, tasks with work are TemporaryFailure (Batch Operations retries
    them); the Lambda does not raise, so the other results still reach the report."""
    env = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = _lambda(_invocation("1.0"), env, tmp_path)
    assert done.returncode == 0, done.stderr
    codes = _codes(json.loads(done.stdout))
    assert codes["t1"][0] == "TemporaryFailure" and codes["t1"][1].startswith("publish failed")
    assert codes["t2"][0] == codes["t5"][0] == "Succeeded"


def test_unknown_schema_is_refused() -> None:
    """Only schemas 1.0 and 2.0 are read; anything else is refused in one line."""
    event = {**_invocation("2.0"), "invocationSchemaVersion": "3.0"}
    assert is_batch_operations(event)
    assert not is_batch_operations({"Records": []})
    with pytest.raises(ValueError, match=r"schema '3\.0' is not supported"):
        handle(event, OwnerRule(), publisher=None, exclude=Exclusions())  # type: ignore[arg-type]
