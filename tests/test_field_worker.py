"""The worker's side of the field faults, against moto's S3 over HTTP and a real Postgres:
versioned deletes reconciled with HEAD, per-event staleness, one photo's bad text never
failing its batch, opaque keys sniffed, EXIF warnings on the row and in the log."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import boto3
import pytest

from handlers.core import plan
from handlers.rules import OwnerRule
from sightline.samples import synthetic_jpeg
from sightline.sqs_source import s3_record, sqs_event
from tests import exifmake as mk
from tests.support import object_task
from workers.pgtext import unstorable
from workers.runtime import WorkerRuntime
from workers.settings import Settings
from workers.store import stale_tasks, status_item, write_photos

OWNERS = OwnerRule()


def _runtime(db_url: str, endpoint: str) -> WorkerRuntime:
    return WorkerRuntime(
        Settings(allow_untrained=True, arch="tiny", s3_endpoint_url=endpoint), db_url, io_threads=2
    )


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_endpoint)


@pytest.fixture
def versioned_bucket(s3) -> str:
    name = f"v-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


class Events:
    """S3 records with increasing sequencers, run through the handler, then the worker (tag
    tasks by tag_batch, deletes by forget), as the two queues would deliver them."""

    def __init__(self, rt: WorkerRuntime, bucket: str) -> None:
        self.rt, self.bucket, self.seq = rt, bucket, 0x100

    def record(self, key: str, name: str, version: str | None, etag: str | None = None) -> dict:
        self.seq += 1
        rec = s3_record(
            self.bucket,
            key,
            created=name.startswith("ObjectCreated"),
            sequencer=f"{self.seq:016X}",
            etag=etag,
        )
        rec["eventName"] = name
        if version:
            rec["s3"]["object"]["versionId"] = version
        return rec

    def run(self, records: list[dict]) -> list[Any]:
        actions = plan(sqs_event({"m": {"Records": records}}), OWNERS)
        tags = [a.task() for a in actions if a.action == "tag"]
        out = self.rt.tag_batch(tags) if tags else []
        out += [self.rt.forget(a.task()) for a in actions if a.action == "delete"]
        return out


def _row(db, bucket: str, key: str) -> tuple:
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT p.status, p.version_id, (SELECT count(*) FROM photo_albums a "
            "WHERE a.photo_id = p.id) FROM photos p WHERE bucket = %s AND key = %s",
            (bucket, key),
        )
        return cur.fetchone()


def _put(s3, bucket: str, key: str, seed: int) -> tuple[str, str]:
    r = s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=seed, width=96, height=72))
    return r["VersionId"], r["ETag"].strip('"')


def test_versioned_bucket_end_to_end(s3, versioned_bucket, db, db_url, moto_endpoint) -> None:
    """put v1, put v2, expire v1 -> v2 stays in its albums; delete v2 by version -> v1 is
    tagged; a delete marker, then its removal -> the photo returns."""
    bucket, key = versioned_bucket, "users/alice/trip/beach.jpg"
    ev = Events(_runtime(db_url, moto_endpoint), bucket)
    v1, e1 = _put(s3, bucket, key, 1)
    v2, e2 = _put(s3, bucket, key, 2)
    # 1. Put v1, Put v2, then v1 expires: all three events in one SQS batch (field case 06a)
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v1)
    put1 = ev.record(key, "ObjectCreated:Put", v1, e1)
    put2 = ev.record(key, "ObjectCreated:Put", v2, e2)
    expire = ev.record(key, "LifecycleExpiration:Delete", v1)
    assert ev.run([put1, put2, expire]) == ["tagged", "stale"]  # the expiry removes nothing
    status, version, albums = _row(db, bucket, key)
    assert (status, version) == ("tagged", v2) and albums > 0

    # 2. the current version is deleted by its id: the one before it becomes current and is
    # tagged (here v3 is put and then deleted, and v2 comes back)
    v3, e3 = _put(s3, bucket, key, 3)
    assert ev.run([ev.record(key, "ObjectCreated:Put", v3, e3)]) == ["tagged"]
    assert _row(db, bucket, key)[:2] == ("tagged", v3)
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v3)
    assert ev.run([ev.record(key, "ObjectRemoved:Delete", v3)]) == ["tagged"]
    status, version, albums = _row(db, bucket, key)
    assert (status, version) == ("tagged", v2) and albums > 0

    # 3. a delete marker: the photo leaves its albums...
    marker = s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
    assert ev.run([ev.record(key, "ObjectRemoved:DeleteMarkerCreated", marker)]) == ["deleted"]
    assert _row(db, bucket, key)[0] == "deleted"
    # ... and when the marker is removed, it comes back
    s3.delete_object(Bucket=bucket, Key=key, VersionId=marker)
    assert ev.run([ev.record(key, "ObjectRemoved:Delete", marker)]) == ["tagged"]
    status, version, albums = _row(db, bucket, key)
    assert (status, version) == ("tagged", v2) and albums > 0


def test_delete_of_a_noncurrent_version_keeps_the_photo(
    s3, versioned_bucket, db, db_url, moto_endpoint
) -> None:
    """Delete events processed before the Put of the current version (other queue) still
    leave the current version tagged: the worker tags what HEAD says is current."""
    bucket, key = versioned_bucket, "users/bob/a.jpg"
    ev = Events(_runtime(db_url, moto_endpoint), bucket)
    v1, _ = _put(s3, bucket, key, 5)
    v2, e2 = _put(s3, bucket, key, 6)
    put2 = ev.record(key, "ObjectCreated:Put", v2, e2)
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v1)
    assert ev.run([ev.record(key, "ObjectRemoved:Delete", v1)]) == ["tagged"]  # before the Put
    assert _row(db, bucket, key)[:2] == ("tagged", v2)
    assert ev.run([put2]) == ["stale"]  # the Put arrives late: already decided
    assert _row(db, bucket, key)[:2] == ("tagged", v2)


def test_a_worker_without_a_model_hands_a_revealed_version_on(
    s3, versioned_bucket, db, db_url, moto_endpoint
) -> None:
    """A delete that reveals a current version, taken by a worker with no model (as a
    ``-Q maintenance`` worker without weights runs): the tag task for that version comes
    back to be published, and a worker with a model tags it."""
    from workers.runtime import TagElsewhere

    bucket, key = versioned_bucket, "users/carol/a.jpg"
    bare = WorkerRuntime(
        Settings(allow_untrained=False, arch="tiny", s3_endpoint_url=moto_endpoint), db_url
    )
    ev = Events(bare, bucket)
    v1, _ = _put(s3, bucket, key, 3)
    v2, e2 = _put(s3, bucket, key, 4)
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v1)
    (handed,) = ev.run([ev.record(key, "ObjectRemoved:Delete", v1)])
    assert isinstance(handed, TagElsewhere)
    assert (handed.task["version_id"], handed.task["etag"]) == (v2, e2)
    assert _row(db, bucket, key) is None  # nothing written where there is no model
    assert _runtime(db_url, moto_endpoint).tag_batch([handed.task]) == ["tagged"]
    assert _row(db, bucket, key)[:2] == ("tagged", v2)


def test_an_unexpected_fault_in_a_delete_retries_it(
    s3, versioned_bucket, db, db_url, moto_endpoint, monkeypatch
) -> None:
    """A delete task that meets a fault no code path expects (here the photos table gone
    from under it) is retried, as a tag batch is: it ended the task and the delete was
    acked away. (Called directly, a Celery task's retry raises the error it retries with.)"""
    from workers import app as worker_app
    from workers.errors import TransientError

    bucket, key = versioned_bucket, "users/carol/a.jpg"
    v1, _ = _put(s3, bucket, key, 3)
    _put(s3, bucket, key, 4)
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v1)
    rt = _runtime(db_url, moto_endpoint)
    monkeypatch.setattr(worker_app, "_runtime", rt)
    record = Events(rt, bucket).record(key, "ObjectRemoved:Delete", v1)
    (action,) = plan(sqs_event({"m": {"Records": [record]}}), OWNERS)
    with db, db.cursor() as cur:
        cur.execute("ALTER TABLE photos RENAME TO photos_away")
    try:
        with pytest.raises(TransientError, match="unexpected UndefinedTable"):
            worker_app.forget(**action.task())
        # past the retry limit too: a limit dropped real deletes in an outage (a trial)
        worker_app.forget.push_request(retries=50)
        try:
            with pytest.raises(TransientError, match="unexpected UndefinedTable"):
                worker_app.forget(**action.task())
        finally:
            worker_app.forget.pop_request()
    finally:
        with db, db.cursor() as cur:
            cur.execute("ALTER TABLE photos_away RENAME TO photos")
    assert worker_app.forget(**action.task()) == "tagged"


def test_a_hand_off_the_broker_refuses_retries_the_delete(
    s3, versioned_bucket, db, db_url, moto_endpoint, monkeypatch
) -> None:
    """The revealed version's tag task could not be published (the broker refused it): the
    delete is retried, not acked away with the version untagged. The refusal is injected at
    the publish call (kombu's error), the rest is real: moto, Postgres, the runtime."""
    from kombu.exceptions import OperationalError

    from workers import app as worker_app
    from workers.errors import TransientError

    bucket, key = versioned_bucket, "users/carol/a.jpg"
    v1, _ = _put(s3, bucket, key, 3)
    _put(s3, bucket, key, 4)
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v1)
    bare = WorkerRuntime(
        Settings(allow_untrained=False, arch="tiny", s3_endpoint_url=moto_endpoint), db_url
    )
    monkeypatch.setattr(worker_app, "_runtime", bare)

    def refused(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("the broker refused the message")

    monkeypatch.setattr(worker_app.tag, "apply_async", refused)
    record = Events(bare, bucket).record(key, "ObjectRemoved:Delete", v1)
    (action,) = plan(sqs_event({"m": {"Records": [record]}}), OWNERS)
    with pytest.raises(TransientError, match="unexpected OperationalError: the broker refused"):
        worker_app.forget(**action.task())


def test_a_delete_past_its_soft_time_limit_is_retried_past_the_retry_limit(
    db_url, moto_endpoint, monkeypatch
) -> None:
    """An outage can end a delete attempt by Celery's soft time limit (a hung S3 HEAD and a
    database timeout pass 100 s): past the retry limit it is still retried, never dropped
    (a limit for errors outside a list of healing ones dropped it; a trial). The time limit
    is injected as the exception Celery raises in the task."""
    from celery.exceptions import SoftTimeLimitExceeded

    from workers import app as worker_app
    from workers.errors import TransientError

    rt = _runtime(db_url, moto_endpoint)
    monkeypatch.setattr(worker_app, "_runtime", rt)

    def hung(task: Any) -> str:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(rt, "forget", hung)
    worker_app.forget.push_request(retries=50)
    try:
        with pytest.raises(TransientError, match="unexpected SoftTimeLimitExceeded"):
            worker_app.forget(bucket="b", key="users/alice/a.jpg")
    finally:
        worker_app.forget.pop_request()


def test_a_delete_task_without_a_key_fails_once(db_url, moto_endpoint, monkeypatch) -> None:
    """A delete task no retry can make whole (no key) fails at once, in one log line, instead
    of cycling at the last backoff for ever."""
    from workers import app as worker_app

    monkeypatch.setattr(worker_app, "_runtime", _runtime(db_url, moto_endpoint))
    assert worker_app.forget(bucket="b") == "failed"
    assert worker_app.forget(bucket="b", key="") == "failed"


def test_a_bucket_name_s3_cannot_have_fails_at_once(db, db_url, moto_endpoint, caplog) -> None:
    """botocore refuses the request before sending it: the delete fails once (no retry can
    make it valid) and the upload's photo is failed with the reason, not retried or parked."""
    rt = _runtime(db_url, moto_endpoint)
    bad = "photos bucket"  # a space: no S3 bucket is named so
    with caplog.at_level(logging.ERROR, logger="workers.runtime"):
        assert rt.forget({"bucket": bad, "key": "users/alice/a.jpg"}) == "failed"
    assert any("Invalid bucket name" in r.getMessage() for r in caplog.records)
    assert rt.tag_batch([object_task(bad, "users/alice/b.jpg")]) == ["failed"]
    with db, db.cursor() as cur:
        cur.execute("SELECT status, error FROM photos WHERE bucket = %s", (bad,))
        status, error = cur.fetchone()
    assert status == "failed" and error.startswith("invalid S3 request: ")
    assert "Invalid bucket name" in error and "\n" not in error


@pytest.mark.parametrize("size", [-1, 2**63, True, 1.5])
def test_a_task_whose_size_is_no_byte_count_fails_alone(
    s3, versioned_bucket, db, db_url, moto_endpoint, size
) -> None:
    """A task whose size no bigint column can hold fails by itself, in its batch and as a
    delete, instead of refusing the batch's one write (or retrying for ever)."""
    rt = _runtime(db_url, moto_endpoint)
    b = versioned_bucket
    _put(s3, b, "users/alice/ok.jpg", 1)
    assert rt.forget({**object_task(b, "users/alice/a.jpg"), "size": size}) == "failed"
    bad = {**object_task(b, "users/alice/bad.jpg"), "size": size}
    assert rt.tag_batch([bad, object_task(b, "users/alice/ok.jpg")]) == ["failed", "tagged"]
    assert unstorable(bad).startswith("size is not a")


@pytest.mark.parametrize(
    "change",
    [
        {"event_time": "2024-W18-3T08:15:00Z"},  # Python reads week dates, Postgres does not
        {"event_time": "2024-05-01T08:15:00,5Z"},
        {"event_time": "2024-05-01T08:15:00+23:59"},
        {"event_time": "2024-05-01T08Z"},
        {"event_time": "2024-06-01t00:00:00z"},  # raised out of the batch's triage
        {"event_time": "9999-12-31T23:59:59-15:00"},  # year 10,000 in UTC
        {"event_time": 1714551300},
        {"bucket": None},
        {"key": ""},
        {"key": "users/alice/" + "x" * 1100 + ".jpg"},  # S3 answers 414: no retry helps
    ],
)
def test_a_task_postgres_cannot_store_fails_alone(
    s3, versioned_bucket, db, db_url, moto_endpoint, change
) -> None:
    """An event time Python parses and Postgres refuses, or a task without a bucket or key:
    that task fails by itself (its batch's other photos are tagged; a delete fails once)
    instead of the batch's write raising, and the delete retrying for ever."""
    rt = _runtime(db_url, moto_endpoint)
    b = versioned_bucket
    _put(s3, b, "users/alice/ok.jpg", 2)
    bad = {**object_task(b, "users/alice/bad.jpg"), **change}
    if "bucket" in change:
        del bad["bucket"]
    assert rt.forget(bad) == "failed"
    good = {**object_task(b, "users/alice/ok.jpg"), "event_time": "2024-05-01T08:15:00.123Z"}
    assert rt.tag_batch([bad, good]) == ["failed", "tagged"]


def test_event_times_as_s3_and_eventbridge_write_them_pass() -> None:
    from handlers.contract import event_time_problem

    for when in ("2024-05-01T08:15:00.123Z", "2024-05-01T10:15:00+00:00", "2024-05-01T08:15Z",
                 "2024-05-01", "2024-05-01 08:15:00+0530", "0001-01-01T00:00:00Z",
                 "2024-05-01T08:15:00.123456789-15:59", "9999-12-31T23:59:59Z"):  # fmt: skip
        assert event_time_problem(when) is None, when
    # the workers' own parsing takes upper-case T and Z only (a lower-case time failed the
    # batch), and years past 9999 or before 1 in UTC break every later read of the photo
    for when, problem in (("2024-05-01t08:15:00Z", "not an RFC 3339 time"),
                          ("2024-05-01T08:15:00z", "not an RFC 3339 time"),
                          ("9999-12-31T23:59:59-15:00", "years 1 to 9999"),
                          ("0001-01-01T00:00:00+15:00", "years 1 to 9999")):  # fmt: skip
        assert problem in (event_time_problem(when) or ""), when


@pytest.mark.slow
def test_a_maintenance_worker_puts_a_revealed_version_on_the_tag_queue(
    s3, versioned_bucket, db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """Real workers: the delete's task reaches a ``-Q maintenance`` worker without weights,
    which publishes the revealed version's tag task before acking the delete (the task
    failed as unexpected and was acked away: that version was never tagged); a tag worker
    then tags it."""
    import redis
    from celery import Celery

    from tests.support import start_worker, stop_worker, wait_for, worker_env

    bucket, key = versioned_bucket, "users/carol/a.jpg"
    v1, _ = _put(s3, bucket, key, 3)
    v2, _ = _put(s3, bucket, key, 4)
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v1)
    ev = Events(None, bucket)  # for its records only
    record = ev.record(key, "ObjectRemoved:Delete", v1)
    (action,) = plan(sqs_event({"m": {"Records": [record]}}), OWNERS)
    Celery(broker=redis_url).send_task(
        "sightline.forget", kwargs=action.task(), queue="maintenance"
    )
    env = worker_env(db_url, redis_url, moto_endpoint)
    for name in ("SIGHTLINE_ALLOW_UNTRAINED", "SIGHTLINE_WEIGHTS"):
        env.pop(name, None)
    r = redis.Redis.from_url(redis_url)
    worker = start_worker(env, "-Q", "maintenance", log=tmp_path / "maintenance.log")
    try:
        wait_for(
            lambda: r.llen("tag") == 1 and r.llen("maintenance") == 0 and r.hlen("unacked") == 0,
            timeout=120,
            what="the revealed version on the tag queue",
        )
    finally:
        stop_worker(worker)
    assert _row(db, bucket, key) is None
    env = worker_env(db_url, redis_url, moto_endpoint)
    worker = start_worker(env, "-Q", "tag", log=tmp_path / "tag.log")
    try:
        tagged = lambda: (_row(db, bucket, key) or ("",))[0] == "tagged"  # noqa: E731
        wait_for(tagged, timeout=180, what="the revealed version tagged")
    finally:
        stop_worker(worker)
    assert _row(db, bucket, key)[:2] == ("tagged", v2)


def test_put_delete_put_within_a_second_ends_tagged(s3, db, db_url, moto_endpoint) -> None:
    """Unversioned: Put, Delete, Put of one key; the delete lands first, then one batch holds
    both Puts. Each Put is judged by its own sequencer: the first is stale, the second
    tagged, and the row matches the newest event."""
    bucket = f"u-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    key = "users/carol/x.jpg"
    ev = Events(_runtime(db_url, moto_endpoint), bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=7, width=96, height=72))
    put1 = ev.record(key, "ObjectCreated:Put", None, "e1")
    s3.delete_object(Bucket=bucket, Key=key)
    delete = ev.record(key, "ObjectRemoved:Delete", None)
    s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=8, width=96, height=72))
    put2 = ev.record(key, "ObjectCreated:Put", None, "e2")
    assert ev.run([delete]) == ["tagged"]  # HEAD: the object exists again
    tasks = [a.task() for a in plan(sqs_event({"a": {"Records": [put1]}}), OWNERS)]
    tasks += [a.task() for a in plan(sqs_event({"b": {"Records": [put2]}}), OWNERS)]
    assert ev.rt.tag_batch(tasks) == ["stale", "tagged"]
    with db, db.cursor() as cur:
        cur.execute("SELECT status, etag, sequencer FROM photos WHERE key = %s", (key,))
        assert cur.fetchone() == ("tagged", "e2", tasks[1]["sequencer"])


def test_staleness_is_per_event(db) -> None:
    """A stored delete at 20: a Put at 10 is stale, a Put at 30 of the same key is not; of
    two tasks for one key in a batch, only the newest is work."""
    with db, db.cursor() as cur:
        write_photos(cur, [status_item(object_task("b", "k.jpg", seq="20"), "deleted", None)])
        tasks = [
            object_task("b", "k.jpg", seq="10"),
            object_task("b", "k.jpg", seq="30"),
            object_task("b", "n.jpg", seq="05"),
            object_task("b", "n.jpg", seq="07"),
            object_task("b", "t.jpg", seq=None, event_time="2024-06-01T00:00:00Z"),
            object_task("b", "t.jpg", seq=None, event_time="2024-06-02T00:00:00Z"),
        ]
        assert stale_tasks(cur, tasks) == {0, 2, 4}


def test_one_bad_key_and_one_bad_exif_never_fail_the_batch(
    s3, db, db_url, moto_endpoint, caplog
) -> None:
    """16 photos in one batch: one key carries NUL, one photo's EXIF carries control bytes.
    Every other photo is tagged on its first attempt; the NUL key is refused alone."""
    bucket = f"n-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"users/dan/{i:02d}.jpg" for i in range(14)]
    keys.append("users/dan/zz\x01\x1f\x7f.jpg")  # other control characters: stored as they are
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=i, width=96, height=72))
    ctrl = mk.jpeg(
        mk.exif_block(camera=("Acme\x01\x1b[31m", "Z\x7f9"), taken="2020:01:01 00:00:00")
    )
    s3.put_object(Bucket=bucket, Key=keys[3], Body=ctrl)
    tasks = [object_task(bucket, k, owner="dan") for k in keys]
    tasks.insert(7, object_task(bucket, "users/dan/b\x00d.jpg", owner="dan"))
    rt = _runtime(db_url, moto_endpoint)
    with caplog.at_level(logging.WARNING, logger="sightline.worker"):
        outcomes = rt.tag_batch(tasks)
    assert outcomes == ["tagged"] * 7 + ["failed"] + ["tagged"] * 8
    assert any("NUL" in r.getMessage() for r in caplog.records)
    with db, db.cursor() as cur:
        cur.execute("SELECT key, status, attempts, camera FROM photos ORDER BY key")
        rows = cur.fetchall()
    assert [(k, s, n) for k, s, n, _ in rows] == [(k, "tagged", 1) for k in keys]
    assert rows[3][3] == "Acme[31m Z9"  # control bytes dropped, the text kept


def test_error_text_is_made_storable(db) -> None:
    """An error message with NUL and control bytes, 5000 characters long, is stored cleaned
    and bounded, not refused."""
    reason = "corrupt\x00 image\x1b: " + "x" * 5000
    with db, db.cursor() as cur:
        ((_, outcome),) = write_photos(
            cur, [status_item(object_task("b", "e.jpg"), "failed", reason)]
        )
        cur.execute("SELECT error FROM photos WHERE key = 'e.jpg'")
        (stored,) = cur.fetchone()
    assert outcome == "failed"
    assert stored.startswith("corrupt image: xxx") and len(stored) <= 1000


@pytest.mark.parametrize(
    ("body", "ctype", "reason"),
    [
        (b"", "binary/octet-stream", "empty file"),
        (b"<html>moved</html>", "text/html", "not an image (format not recognised); "),
    ],
)
def test_a_photo_overwritten_by_no_photo_leaves_its_albums(
    s3, db, db_url, moto_endpoint, body, ctype, reason
) -> None:
    """A tagged photo overwritten by an empty object (or a page under text/html): the
    handler ignored the newer write, so the old photo stayed in its albums for good."""
    bucket = f"n-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    key = "users/dana/overwritten.jpg"
    ev = Events(_runtime(db_url, moto_endpoint), bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=3, width=96, height=72))
    assert ev.run([ev.record(key, "ObjectCreated:Put", None, "e1")]) == ["tagged"]
    assert _row(db, bucket, key)[2] > 0
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=ctype)
    rec = ev.record(key, "ObjectCreated:Put", None, "e2")
    rec["s3"]["object"]["size"] = len(body)
    rec["s3"]["object"]["contentType"] = ctype  # as MinIO sends it
    assert ev.run([rec]) == ["ignored"]
    assert _row(db, bucket, key)[0::2] == ("ignored", 0)
    with db, db.cursor() as cur:
        cur.execute("SELECT error FROM photos WHERE key = %s", (key,))
        assert cur.fetchone()[0].startswith(reason)


def test_opaque_keys_are_sniffed(s3, db, db_url, moto_endpoint) -> None:
    """Keys with no extension: a photo is tagged, anything else is ignored with its reason
    (not failed)."""
    bucket = f"o-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket, Key="users/42/8f3a9c", Body=synthetic_jpeg(seed=1, width=96, height=72)
    )
    s3.put_object(
        Bucket=bucket,
        Key="users/42/77d0e1",
        Body=b"%PDF-1.7 not a photo",
        ContentType="application/pdf",
    )
    rt = _runtime(db_url, moto_endpoint)
    tasks = [object_task(bucket, k) for k in ("users/42/8f3a9c", "users/42/77d0e1")]
    assert rt.tag_batch(tasks) == ["tagged", "ignored"]
    with db, db.cursor() as cur:
        cur.execute("SELECT status, error FROM photos WHERE key = 'users/42/77d0e1'")
        assert cur.fetchone() == (
            "ignored",
            "not an image (format not recognised); Content-Type application/pdf",
        )


def test_unreadable_exif_warns_on_the_row_and_in_the_log(
    s3, db, db_url, moto_endpoint, caplog
) -> None:
    bucket = f"x-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="w.jpg", Body=mk.jpeg_broken_exif())
    rt = _runtime(db_url, moto_endpoint)
    with caplog.at_level(logging.WARNING, logger="sightline.worker"):
        assert rt.tag_batch([object_task(bucket, "w.jpg")]) == ["tagged"]
    with db, db.cursor() as cur:
        cur.execute("SELECT warning FROM photos WHERE key = 'w.jpg'")
        (warning,) = cur.fetchone()
    assert warning and "EXIF" in warning
    assert any("warning: " in r.getMessage() and "EXIF" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_bad_key_and_bad_exif_through_a_real_worker(
    s3, db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """The same 16-photo batch through Redis and a `sightline worker` process: one task's
    key carries NUL (as a handler before this fix sent it), one photo's EXIF carries control
    bytes. The 15 others are tagged on their first attempt; nothing is retried or parked."""
    from celery import Celery

    from tests.support import start_worker, stop_worker, wait_for, worker_env

    bucket = f"c-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"users/eve/{i:02d}.jpg" for i in range(15)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=i, width=96, height=72))
    ctrl = mk.jpeg(mk.exif_block(camera=("Acme\x01\x02", "Z\x1b9")))
    s3.put_object(Bucket=bucket, Key=keys[5], Body=ctrl)
    tasks = [object_task(bucket, k, owner="eve") for k in keys]
    tasks.insert(9, object_task(bucket, "users/eve/n\x00l.jpg", owner="eve"))
    log = tmp_path / "worker.log"
    env = worker_env(db_url, redis_url, moto_endpoint, SIGHTLINE_RETRY_BASE_S="0.2")
    worker = start_worker(env, "--batch-size", "16", "--batch-wait-ms", "3000", log=log)
    sender = Celery(broker=redis_url, set_as_current=False)
    try:
        for t in tasks:
            sender.send_task("sightline.tag", queue="tag", kwargs=t)

        def tagged() -> int:
            with db, db.cursor() as cur:
                cur.execute("SELECT count(*) FROM photos WHERE status = 'tagged'")
                return cur.fetchone()[0]

        wait_for(lambda: tagged() == len(keys), timeout=180, what=f"15 photos tagged ({log})")
        time.sleep(2)  # a retry, had there been one, would be back by now
    finally:
        stop_worker(worker)
    with db, db.cursor() as cur:
        cur.execute("SELECT key, status, attempts, camera FROM photos ORDER BY key")
        rows = cur.fetchall()
    assert [(k, s, n) for k, s, n, _ in rows] == [(k, "tagged", 1) for k in keys]
    assert rows[5][3] == "Acme Z9"
    text = log.read_text(errors="replace")
    assert "NUL" in text  # the refusal is logged
    assert "in backoff" not in text and "gave up" not in text  # no retry, nothing parked
