"""The handler's plan for every envelope, written from the documented formats (no broker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handlers.contract import normalize_sequencer
from handlers.core import plan
from handlers.events import EventError, object_event
from handlers.rules import OwnerRule

FIXTURES = Path(__file__).parent / "fixtures" / "events"
OWNERS = OwnerRule()

SPACE = "users/alice/Holiday 2024/beach day.jpg"
PLUS = "users/alice/one+two + three.jpeg"
UTF8 = "users/alice/Москва/café.PNG"
EB_KEY = "users/bob/My Photo+1 (é).heic"
MINIO_KEY = "users/carol/Sommer + See/über.jpg"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def summary(event: dict[str, Any], owners: OwnerRule = OWNERS) -> list[tuple]:
    return [(a.action, a.event.key if a.event else None, a.owner) for a in plan(event, owners)]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "s3_put.json",
            [("tag", SPACE, "alice"), ("tag", PLUS, "alice"), ("tag", UTF8, "alice")],
        ),
        ("s3_delete.json", [("delete", SPACE, "alice"), ("delete", UTF8, "alice")]),
        ("s3_test_event.json", [("ignore", None, None)]),
        (
            "sqs_s3.json",
            [("tag", SPACE, "alice"), ("ignore", None, None), ("delete", UTF8, "alice")],
        ),
        ("sns_s3.json", [("tag", PLUS, "alice")]),
        ("sqs_sns_s3.json", [("tag", UTF8, "alice"), ("ignore", None, None)]),
        ("eventbridge_created.json", [("tag", EB_KEY, "bob")]),
        ("eventbridge_deleted.json", [("delete", EB_KEY, "bob")]),
        ("sqs_eventbridge.json", [("tag", "users/bob/100%2B.jpg", "bob")]),
        ("minio_put.json", [("tag", MINIO_KEY, "carol")]),
        ("minio_delete.json", [("delete", MINIO_KEY, "carol")]),
        # the bytes decide (the worker ignores them if no image): an image key's newer write
        ("minio_text.json", [("tag", "users/carol/scan.jpg", "carol")]),
    ],
)
def test_every_envelope_gives_the_right_actions_and_decoded_keys(fixture, expected) -> None:
    """Each envelope yields its records' actions with keys decoded exactly once."""
    assert summary(load(fixture)) == expected


def test_filters_keep_only_images_with_an_owner() -> None:
    """Folder markers, non-images, tagging events and ownerless keys are ignored (keys with no
    extension too, when SIGHTLINE_OPAQUE_KEYS=ignore). An empty image key is tagged: it
    replaced the photo the key held, whose tags must go (the worker records it ignored)."""
    actions = plan(load("s3_filters.json"), OWNERS, opaque_keys=False)
    got = [(a.action, a.event.key, a.reason) for a in actions]
    assert got == [
        ("ignore", "users/alice/albums/", "folder marker"),
        ("ignore", "users/alice/notes.txt", "not an image extension (.txt)"),
        ("tag", "users/alice/empty.jpg", None),
        ("ignore", "users/alice/noext", "not an image extension (none)"),
        ("ignore", "users/alice/tagged.jpg", "event type not handled (ObjectTagging:Put)"),
        ("ignore", "shared/outside.jpg", "key outside the owner pattern 'users/{owner}/'"),
        ("tag", "users/bob/UPPER.TIFF", None),
        ("tag", "users/bob/photo.webp", None),
        ("ignore", "users/bob/notes.txt", "not an image extension (.txt)"),
    ]


@pytest.mark.parametrize("ext", [".jfif", ".JFIF", ".avif"])
def test_jfif_and_avif_uploads_are_tagged(ext: str) -> None:
    """Pillow decodes both (JPEG under another name; AVIF); the handler ignored them."""
    from handlers.events import object_event
    from handlers.rules import Exclusions, skip_reason

    ev = object_event(kind="created", bucket="b", raw_key=f"users/a/p{ext}", url_encoded=False,
                      size=10)  # fmt: skip
    assert skip_reason(ev, Exclusions.parse(None)) is None


def test_default_owner_takes_keys_outside_the_pattern() -> None:
    """With a default owner, a key outside the pattern is tagged for that owner."""
    owners = OwnerRule("users/{owner}/", "family")
    by_key = {a.event.key: (a.action, a.owner) for a in plan(load("s3_filters.json"), owners)}
    assert by_key["shared/outside.jpg"] == ("tag", "family")
    assert by_key["users/bob/photo.webp"] == ("tag", "bob")


def test_owner_pattern_in_the_middle_of_the_key() -> None:
    """A custom SIGHTLINE_OWNER_PATTERN finds the owner wherever the pattern puts it."""
    owners = OwnerRule("tenants/acme/{owner}/photos/")
    assert owners.owner_of("tenants/acme/dana/photos/a.jpg") == "dana"
    assert owners.owner_of("tenants/acme/dana/videos/a.jpg") is None
    with pytest.raises(ValueError, match="exactly once"):
        OwnerRule("users/")


def test_the_same_record_twice_gives_one_task_and_the_older_record_is_not_sent() -> None:
    """Within one batch: a repeated record is sent once; an older record for a key is dropped."""
    actions = plan(load("sqs_ordering.json"), OWNERS)
    got = [(a.message_id, a.action) for a in actions]
    assert got == [
        ("msg-a", "tag"),
        ("msg-a-again", "ignore"),
        ("msg-old", "ignore"),
        ("msg-new", "delete"),
    ]
    assert actions[1].same_as is actions[0]
    assert "superseded" in actions[2].reason


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("0A1B2C3D4E5F678901", "0A1B2C3D4E5F678902"),
        ("0A1B2C3D4E5F67FF00", "0A1B2C3D4E5F6800"),  # shorter is newer: padded, not numeric
        ("0A1B2C3D4E5F6780", "0A1B2C3D4E5F678001"),  # longer is newer
        ("0a1b2c3d4e5f678901", "0A1B2C3D4E5F678902"),  # case does not matter
    ],
)
def test_sequencers_compare_the_way_s3_documents(older: str, newer: str) -> None:
    """Sequencers are right-padded with zeros to one length, then compared as strings."""
    assert normalize_sequencer(older) < normalize_sequencer(newer)


def test_equal_sequencers_after_padding_are_the_same_point() -> None:
    """'AB' and 'AB00' are the same sequencer once padded."""
    assert normalize_sequencer("AB") == normalize_sequencer("ab00")


def test_records_without_sequencers_are_all_sent() -> None:
    """Without a sequencer (moto, some MinIO setups) two different writes are not ordered away."""
    rec = load("s3_put.json")["Records"][0]
    first = json.loads(json.dumps(rec))
    second = json.loads(json.dumps(rec))
    for r, etag, t in (
        (first, "aa", "2024-06-01T12:00:00Z"),
        (second, "bb", "2024-06-01T12:00:05Z"),
    ):
        del r["s3"]["object"]["sequencer"]
        r["s3"]["object"]["eTag"], r["eventTime"] = etag, t
    assert [a.action for a in plan({"Records": [first, second]}, OWNERS)] == ["tag", "tag"]


def test_malformed_batch_fails_only_the_bad_messages() -> None:
    """A message that is not JSON or lacks a bucket is an error; its neighbours still go."""
    actions = plan(load("sqs_malformed.json"), OWNERS)
    assert [(a.message_id, a.action) for a in actions] == [
        ("msg-good-1", "tag"),
        ("msg-not-json", "error"),
        ("msg-no-bucket", "error"),
        ("msg-good-2", "tag"),
    ]
    assert "not JSON" in actions[1].reason


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"hello": "world"}, "not a known event envelope"),
        ({"Records": []}, "empty 'Records'"),
        ({"Records": ["x"]}, "record is not a JSON object"),
        ({"Records": [{"eventName": "ObjectCreated:Put"}]}, "neither an S3 nor an SNS"),
        ({"Records": [{"Sns": {"Type": "Notification", "Message": "{"}}]}, "SNS Message is not"),
        ({"detail-type": "Object Created", "source": "aws.ec2", "detail": {}}, "not aws.s3"),
        ({"EventName": "s3:ObjectCreated:Put", "Key": "b/k", "Records": None}, "no records"),
    ],
)
def test_unreadable_events_are_errors_with_a_reason(event: dict, reason: str) -> None:
    """Shapes the handler cannot read become one error action with a one-line reason."""
    actions = plan(event, OWNERS)
    assert [a.action for a in actions] == ["error"]
    assert reason in actions[0].reason


def test_sns_subscription_confirmation_is_ignored() -> None:
    """SNS control messages arriving in SQS are not object records and not errors."""
    body = {"Type": "SubscriptionConfirmation", "TopicArn": "arn:aws:sns:x:1:t", "Message": "hi"}
    event = {"Records": [{"messageId": "m1", "eventSource": "aws:sqs", "body": json.dumps(body)}]}
    assert [(a.action, a.reason) for a in plan(event, OWNERS)] == [
        ("ignore", "SNS SubscriptionConfirmation")
    ]


@pytest.mark.parametrize(
    ("raw", "encoded", "key"),
    [
        ("a+b.jpg", True, "a b.jpg"),
        ("a%2Bb.jpg", True, "a+b.jpg"),
        ("%E2%9C%93+ok.jpg", True, "✓ ok.jpg"),
        ("100%25.jpg", True, "100%.jpg"),
        ("a+b%2B.jpg", False, "a+b%2B.jpg"),  # EventBridge: as it is
    ],
)
def test_object_event_decodes_keys_only_when_encoded(raw: str, encoded: bool, key: str) -> None:
    """URL-encoded keys are decoded ('+' is a space); EventBridge keys are left alone."""
    ev = object_event(kind="created", bucket="b", raw_key=raw, url_encoded=encoded)
    assert ev.key == key


def test_invalid_utf8_after_decoding_is_an_error() -> None:
    """A key whose percent-escapes are not UTF-8 is refused, not mangled."""
    with pytest.raises(EventError, match="not UTF-8"):
        object_event(kind="created", bucket="b", raw_key="%FF%FE.jpg", url_encoded=True)


def test_minio_tagging_events_are_not_content_changes() -> None:
    """MinIO's s3:ObjectCreated:PutTagging does not re-tag the photo."""
    event = load("minio_put.json")
    event["Records"][0]["eventName"] = event["EventName"] = "s3:ObjectCreated:PutTagging"
    [action] = plan(event, OWNERS)
    assert (action.action, action.reason) == (
        "ignore",
        "event type not handled (ObjectCreated:PutTagging)",
    )


def test_lifecycle_expiration_is_a_delete() -> None:
    """S3 Lifecycle expiry removes the object, so the photo is forgotten."""
    event = load("s3_delete.json")
    event["Records"][0]["eventName"] = "LifecycleExpiration:Delete"
    assert plan(event, OWNERS)[0].action == "delete"
