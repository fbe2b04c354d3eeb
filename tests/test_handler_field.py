"""The handler's side of the field faults: versioned deletes never supersede a Put, keys with
NUL are refused alone, keys with no extension follow SIGHTLINE_OPAQUE_KEYS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handlers.config import HandlerConfig
from handlers.core import plan
from handlers.rules import OwnerRule
from sightline.sqs_source import s3_record, sqs_event

FIELD = Path(__file__).parent / "fixtures" / "fieldcases"
OWNERS = OwnerRule()


def versioned(key: str, name: str, version: str, seq: str) -> dict:
    rec = s3_record("pics", key, created=name.startswith("ObjectCreated"), sequencer=seq)
    rec["eventName"] = name
    rec["s3"]["object"]["versionId"] = version
    return rec


def test_field_case_put_of_current_version_survives_expiry_of_old_one() -> None:
    """06a: Put v2 then LifecycleExpiration of v1 in one SQS batch: v2 is tagged and the
    expiry goes to the worker (which reconciles it), instead of the Put being dropped as
    superseded."""
    event = json.loads((FIELD / "06a_sqs_put_then_noncurrent_version_expired.json").read_text())
    actions = plan(event, OWNERS)
    assert [(a.action, a.event.version_id, a.reason) for a in actions] == [
        ("tag", "v2-CURRENT.Xk3lq9", None),
        ("delete", "v1-OLD.a8Jq2", None),
    ]


@pytest.mark.parametrize(
    "name",
    ["ObjectRemoved:Delete", "LifecycleExpiration:Delete", "ObjectRemoved:DeleteMarkerCreated"],
)
def test_a_versioned_delete_never_supersedes_a_put(name: str) -> None:
    records = [
        versioned("users/a/x.jpg", "ObjectCreated:Put", "v2", "0010"),
        versioned("users/a/x.jpg", name, "v1", "0020"),
    ]
    actions = plan(sqs_event({"m1": {"Records": records}}), OWNERS)
    assert [a.action for a in actions] == ["tag", "delete"]


def test_newer_put_and_unversioned_delete_still_supersede() -> None:
    """What was right stays: an older Put is dropped for a newer Put or an unversioned delete."""
    records = [
        versioned("users/a/x.jpg", "ObjectCreated:Put", "v1", "0010"),
        versioned("users/a/x.jpg", "ObjectCreated:Put", "v2", "0020"),
        s3_record("pics", "users/a/y.jpg", sequencer="0010"),
        s3_record("pics", "users/a/y.jpg", created=False, sequencer="0020"),
    ]
    actions = plan(sqs_event({"m1": {"Records": records}}), OWNERS)
    assert [a.action for a in actions] == ["ignore", "tag", "ignore", "delete"]


def test_key_with_nul_is_refused_alone() -> None:
    """S3 allows NUL in keys; Postgres text cannot hold it: that record is refused with a
    reason, its batch-mates are tagged."""
    records = [s3_record("pics", "users/a/ok.jpg"), s3_record("pics", "users/a/b\x00d.jpg")]
    records.append(s3_record("pics", "users/a/ctrl\x01\x1b.jpg"))  # storable: tagged
    actions = plan(sqs_event({"m1": {"Records": records}}), OWNERS)
    assert [(a.action, a.reason) for a in actions] == [
        ("tag", None),
        ("ignore", "key contains NUL, which the photo database cannot store"),
        ("tag", None),
    ]


@pytest.mark.parametrize(
    ("setting", "key", "action"),
    [
        (None, "users/42/8f3a9c0d", "tag"),  # the documented default: tag
        ("tag", "users/42/8f3a9c0d", "tag"),
        ("ignore", "users/42/8f3a9c0d", "ignore"),
        (None, "users/42/notes.txt", "ignore"),  # a non-image extension stays cheap to skip
        (None, "users/42/.hidden", "tag"),  # a leading dot is a name, not an extension
        (None, "users/42.d/8f3a9c", "tag"),  # a dot in a folder is no extension
    ],
)
def test_opaque_keys_follow_the_setting(setting, key: str, action: str) -> None:
    env = {"SIGHTLINE_OPAQUE_KEYS": setting} if setting else {}
    config = HandlerConfig.from_env(env)
    actions = plan(
        sqs_event({"m1": {"Records": [s3_record("pics", key)]}}),
        OWNERS,
        opaque_keys=config.opaque_keys,
    )
    assert actions[0].action == action


def test_opaque_keys_setting_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="SIGHTLINE_OPAQUE_KEYS"):
        HandlerConfig.from_env({"SIGHTLINE_OPAQUE_KEYS": "maybe"})
