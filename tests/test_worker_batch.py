"""The worker's batch path against real S3 (moto over HTTP) and Postgres."""

from __future__ import annotations

import uuid

import boto3
import pytest

from sightline.samples import synthetic_jpeg
from tests.support import object_task, start_worker, stop_worker, wait_for, worker_env
from workers.errors import TransientError
from workers.runtime import WorkerRuntime
from workers.settings import Settings
from workers.store import status_item, write_photos


@pytest.fixture
def bucket(moto_endpoint: str) -> tuple:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    name = f"w-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _runtime(db_url: str, endpoint: str, **settings) -> WorkerRuntime:
    return WorkerRuntime(
        Settings(allow_untrained=True, arch="tiny", s3_endpoint_url=endpoint, **settings), db_url
    )


def test_batch_outcomes_per_photo(bucket, db, db_url, moto_endpoint) -> None:
    """One batch: good photos tagged, a corrupt one failed, a deleted one gone, a stale one
    skipped; each photo's fate is its own."""
    s3, name = bucket
    for key, data in {
        "a.jpg": synthetic_jpeg(seed=1),
        "b.jpg": synthetic_jpeg(seed=2),
        "bad.jpg": b"\xff\xd8 broken",
        "old.jpg": synthetic_jpeg(seed=3),
    }.items():
        s3.put_object(Bucket=name, Key=key, Body=data)
    with db, db.cursor() as cur:  # a newer delete for old.jpg is already recorded
        write_photos(cur, [status_item(object_task(name, "old.jpg", seq="99"), "deleted", None)])
    rt = _runtime(db_url, moto_endpoint)
    tasks = [object_task(name, k) for k in ["a.jpg", "b.jpg", "bad.jpg", "missing.jpg", "old.jpg"]]
    assert rt.tag_batch(tasks) == ["tagged", "tagged", "failed", "gone", "stale"]
    assert rt.times.batches == 1 and rt.times.photos == 5
    with db, db.cursor() as cur:
        cur.execute("SELECT key, status, error IS NOT NULL FROM photos ORDER BY key")
        rows = cur.fetchall()
    assert rows == [
        ("a.jpg", "tagged", False),
        ("b.jpg", "tagged", False),
        ("bad.jpg", "failed", True),
        ("missing.jpg", "gone", True),
        ("old.jpg", "deleted", False),
    ]


def test_unreachable_s3_is_transient_not_failed(db_url) -> None:
    """An S3 endpoint that does not answer makes the photo retry, not fail."""
    rt = _runtime(db_url, "http://127.0.0.1:9")
    rt.settings = Settings(
        allow_untrained=True, arch="tiny", s3_endpoint_url="http://127.0.0.1:9", s3_timeout_s=1.0
    )
    (outcome,) = rt.tag_batch([object_task("b", "x.jpg")])
    assert isinstance(outcome, TransientError)


def test_one_refused_row_does_not_lose_the_batch(db) -> None:
    """A row the database refuses is reported alone; the rest of the batch is written."""
    good = status_item(object_task("b", "ok.jpg"), "failed", "reason")
    bad = {**status_item(object_task("b", "bad.jpg"), "failed", "r"), "gps_lat": 123.0}
    with db, db.cursor() as cur:
        results = write_photos(cur, [good, bad, {**good, "key": "ok2.jpg"}])
    assert results[0][1] == "failed" and results[2][1] == "failed"
    assert results[1][0] is None and results[1][1].startswith("error: ")
    with db, db.cursor() as cur:
        cur.execute("SELECT key FROM photos ORDER BY key")
        assert [r[0] for r in cur.fetchall()] == ["ok.jpg", "ok2.jpg"]


@pytest.mark.slow
def test_worker_parks_a_photo_when_retries_are_spent(db, db_url, redis_url, tmp_path) -> None:
    """With retries off, a photo whose S3 stopped answering ends failed with the reason, and
    the worker goes on with the next photo."""
    from celery import Celery

    from sightline.embedded import start_moto

    # An object store that answers the worker's startup check, then goes away.
    s3_server, s3_url = start_moto()
    env = worker_env(
        db_url, redis_url, s3_url,
        SIGHTLINE_S3_TIMEOUT_S="1", SIGHTLINE_MAX_RETRIES="0",
    )  # fmt: skip
    worker = start_worker(env, log=tmp_path / "w.log")
    try:
        wait_for(lambda: "ready." in (tmp_path / "w.log").read_text(), timeout=90, what="ready")
        s3_server.stop()
        sender = Celery(broker=redis_url, set_as_current=False)
        for key in ["one.jpg", "two.jpg"]:
            sender.send_task("sightline.tag", kwargs=object_task("b", key), queue="tag")

        def parked() -> bool:
            with db, db.cursor() as cur:
                cur.execute("SELECT count(*) FROM photos WHERE status = 'failed'")
                return cur.fetchone()[0] == 2

        wait_for(parked, timeout=90, what=f"two parked photos ({tmp_path / 'w.log'})")
    finally:
        stop_worker(worker)
    with db, db.cursor() as cur:
        cur.execute("SELECT error, attempts FROM photos ORDER BY key")
        rows = cur.fetchall()
    assert all(e.startswith("gave up after retries: S3 unreachable") for e, _ in rows)


def test_object_over_the_size_cap_fails_without_download(bucket, db, db_url, moto_endpoint):
    """An object above SIGHTLINE_MAX_OBJECT_BYTES is refused with its reason."""
    s3, name = bucket
    s3.put_object(Bucket=name, Key="big.jpg", Body=synthetic_jpeg(seed=5))
    rt = _runtime(db_url, moto_endpoint, max_object_bytes=10_000)
    assert rt.tag_batch([object_task(name, "big.jpg")]) == ["failed"]
    with db, db.cursor() as cur:
        cur.execute("SELECT error FROM photos")
        assert cur.fetchone()[0].startswith("object too large")


def test_versioned_object_is_read_at_the_events_version(bucket, db, db_url, moto_endpoint):
    """With a version id, the worker tags that version even after a newer one is written."""
    s3, name = bucket
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=name, Key="v.jpg", Body=synthetic_jpeg(width=320, height=240))
    s3.put_object(Bucket=name, Key="v.jpg", Body=b"not an image any more")
    rt = _runtime(db_url, moto_endpoint)
    task = {**object_task(name, "v.jpg"), "version_id": v1["VersionId"]}
    assert rt.tag_batch([task]) == ["tagged"]
    with db, db.cursor() as cur:
        cur.execute("SELECT width, version_id FROM photos")
        assert cur.fetchone() == (320, v1["VersionId"])


@pytest.mark.slow
def test_redelivered_message_gives_one_row(db, db_url, redis_url, moto_endpoint, tmp_path):
    """The same task delivered twice through the broker leaves one tagged row (written twice,
    idempotently)."""
    from celery import Celery

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    name = f"w-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="users/a/x.jpg", Body=synthetic_jpeg(seed=9))
    worker = start_worker(worker_env(db_url, redis_url, moto_endpoint), log=tmp_path / "w.log")
    try:
        sender = Celery(broker=redis_url, set_as_current=False)
        for _ in range(2):
            sender.send_task(
                "sightline.tag", kwargs=object_task(name, "users/a/x.jpg"), queue="tag"
            )

        def attempts() -> int:
            with db, db.cursor() as cur:
                cur.execute("SELECT coalesce(sum(attempts), 0) FROM photos")
                return cur.fetchone()[0]

        wait_for(lambda: attempts() == 2, timeout=90, what="two writes of one photo")
    finally:
        stop_worker(worker)
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*), min(status) FROM photos")
        assert cur.fetchone() == (1, "tagged")
        cur.execute("SELECT count(*) FROM photo_scenes")
        assert cur.fetchone()[0] == 5


def test_release_of_another_model_is_skipped_with_one_warning(
    bucket, db, db_url, moto_endpoint, caplog
) -> None:
    """A live release built from another model's embeddings is not matched against, and the
    worker says so once, not once per batch."""
    import logging

    s3, name = bucket
    s3.put_object(Bucket=name, Key="a.jpg", Body=synthetic_jpeg(seed=1, width=320, height=240))
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status) "
            "VALUES ('other-1', 512, 'some-other-model', '{}', 'active')"
        )
    rt = _runtime(db_url, moto_endpoint)
    with caplog.at_level(logging.WARNING, logger="sightline.worker"):
        assert rt.tag_batch([object_task(name, "a.jpg")]) == ["tagged"]
        rt.releases.expire()  # the next batch re-reads the live releases
        assert rt.tag_batch([object_task(name, "a.jpg", seq="11")]) == ["tagged"]
    warnings = [r for r in caplog.records if "other-1" in r.getMessage()]
    assert len(warnings) == 1 and "not matched" in warnings[0].getMessage()
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*) FROM landmark_matches")
        assert cur.fetchone()[0] == 0


@pytest.mark.parametrize("write_path", ["copy", "function"])
def test_nan_from_the_network_fails_that_photo_alone(
    bucket, db, db_url, moto_endpoint, monkeypatch, write_path
) -> None:
    """A network that gives NaN for one photo (an overflow at half precision on a GPU) fails
    that photo, recorded with the reason; the batch's other photos are tagged. Before, the
    NaN reached the batch's one JSON parameter and failed the whole batch."""
    import numpy as np

    s3, name = bucket
    for n in range(3):
        s3.put_object(Bucket=name, Key=f"{n}.jpg", Body=synthetic_jpeg(seed=n))
    rt = _runtime(db_url, moto_endpoint, write_path=write_path)
    rt.model.load()
    predict = rt.model.predict

    def faulty(crops):
        probs, embs = predict(crops)
        embs = np.array(embs, copy=True)
        embs[1, 3] = np.nan
        return probs, embs

    monkeypatch.setattr(rt.model, "predict", faulty)
    tasks = [object_task(name, f"{n}.jpg") for n in range(3)]
    assert rt.tag_batch(tasks) == ["tagged", "failed", "tagged"]
    with db, db.cursor() as cur:
        cur.execute("SELECT key, status, error, embedding IS NULL FROM photos ORDER BY key")
        rows = cur.fetchall()
    assert [(k, s, e) for k, s, _, e in rows] == [
        ("0.jpg", "tagged", False), ("1.jpg", "failed", True), ("2.jpg", "tagged", False)
    ]  # fmt: skip
    assert "NaN" in rows[1][2] and "embedding" in rows[1][2]
    failures = rt.metrics.registry.get_sample_value
    assert failures("sightline_photo_failures_total", {"reason": "model"}) == 1
    assert failures("sightline_photo_failures_total", {"reason": "photo"}) == 0


def test_a_batch_written_during_an_upgrade_waits_for_it(bucket, db, db_url, moto_endpoint):
    """The worker's write transaction takes the schema lock first (workers.migrate
    .hold_schema): while an upgrade holds it, the batch waits, then writes with the
    upgraded functions; it is neither refused nor run against a half-changed schema."""
    import threading

    from workers import migrate

    s3, name = bucket
    s3.put_object(Bucket=name, Key="a.jpg", Body=synthetic_jpeg(seed=1))
    rt = _runtime(db_url, moto_endpoint)
    got: list = []
    with db, db.cursor() as cur:  # what upgrade() holds while it runs
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (migrate._LOCK_ID,))
        batch = threading.Thread(
            target=lambda: got.append(rt.tag_batch([object_task(name, "a.jpg")]))
        )
        batch.start()

        def waiting() -> int:
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            return cur.fetchone()[0]

        wait_for(waiting, timeout=60, interval=0.05, what="the batch's write to wait")
        assert batch.is_alive() and not got  # fetched and tagged, waiting to write
        cur.execute("SELECT count(*) FROM photos")
        assert cur.fetchone() == (0,)
    batch.join(timeout=60)
    assert got == [["tagged"]]
