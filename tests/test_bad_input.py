"""The generated bad-input corpus: each photo and event is refused with its reason (or, when
only its EXIF is odd, accepted without the odd facts), and in the worker each photo ends as
one row of its own, never a retry of the batch."""

from __future__ import annotations

import re
import uuid

import boto3
import pytest

from handlers.core import plan
from handlers.rules import OwnerRule
from tests.badinput import event_corpus, photo_corpus
from workers.exif import read_exif
from workers.photos import PhotoError, decode
from workers.runtime import WorkerRuntime
from workers.settings import Settings

PHOTOS = photo_corpus()
EVENTS = event_corpus()


@pytest.mark.parametrize("case", PHOTOS, ids=[c.name for c in PHOTOS])
def test_each_bad_photo_is_refused_with_its_reason(case) -> None:
    """decode() refuses with a PhotoError whose one-line reason names the fault, or decodes."""
    if case.refusal is None:
        photo = decode(case.data, resize=73, crop=64)
        assert photo.crop.shape == (64, 64, 3)
        assert 1 <= photo.orientation <= 8
    else:
        with pytest.raises(PhotoError, match=case.refusal) as info:
            decode(case.data, resize=73, crop=64, max_pixels=100_000_000)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", PHOTOS, ids=[c.name for c in PHOTOS])
def test_odd_exif_gives_no_false_facts(case) -> None:
    """read_exif never raises: an unreadable GPS or time is left out, never guessed."""
    facts = read_exif(case.data)
    if facts.gps is not None:
        lat, lon = facts.gps
        assert -90 <= lat <= 90 and -180 <= lon <= 180
    assert 1 <= facts.orientation <= 8
    if "huge time offset" in case.name or "bad date" in case.name:
        assert facts.taken_at is None or facts.taken_at.tzinfo is None
    if "gps" in case.name or "latitude" in case.name:
        assert facts.gps is None


@pytest.mark.parametrize(("name", "event", "reason"), EVENTS, ids=[e[0] for e in EVENTS])
def test_each_bad_event_is_an_error_with_its_reason(name, event, reason) -> None:
    """The handler turns each unreadable event into one error action with a one-line reason."""
    actions = plan(event, OwnerRule())
    errors = [a for a in actions if a.action == "error"]
    assert errors, [a.to_json() for a in actions]
    assert all(a.action in {"error", "ignore"} for a in actions)
    assert re.search(reason, errors[0].reason or ""), errors[0].reason
    assert "\n" not in (errors[0].reason or "")


def test_the_worker_writes_one_row_per_bad_photo(db, db_url, moto_endpoint) -> None:
    """The whole corpus in one batch, from S3 over HTTP: every photo ends tagged or failed with
    its reason (an empty object ignored: it is no photo); none makes the batch retry, so a bad
    photo never holds back its neighbours."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"bad-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    tasks = []
    for i, case in enumerate(PHOTOS):
        key = f"users/b/{i}.jpg"
        s3.put_object(Bucket=bucket, Key=key, Body=case.data)
        tasks.append(
            {
                "bucket": bucket,
                "key": key,
                "version_id": None,
                "etag": None,
                "size": len(case.data),
                "sequencer": None,
                "event_time": None,
                "owner": "b",
            }
        )
    rt = WorkerRuntime(
        Settings(allow_untrained=True, arch="tiny", s3_endpoint_url=moto_endpoint), db_url
    )
    outcomes = rt.tag_batch(tasks)
    expected = {c.name: "failed" if c.refusal else "tagged" for c in PHOTOS} | {"empty": "ignored"}
    assert outcomes == [expected[c.name] for c in PHOTOS]
    with db, db.cursor() as cur:
        cur.execute("SELECT key, status, error FROM photos")
        rows = {k: (s, e) for k, s, e in cur.fetchall()}
    assert len(rows) == len(PHOTOS)
    for i, case in enumerate(PHOTOS):
        status, error = rows[f"users/b/{i}.jpg"]
        if case.refusal is None:
            assert (status, error) == ("tagged", None), case.name
        else:
            assert status == expected[case.name], case.name
            assert re.search(case.refusal, error), (case.name, error)
