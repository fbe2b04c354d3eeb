"""Upload -> S3 event -> SQS -> handler -> broker -> worker process -> Postgres -> album SQL,
every part real: moto's S3/SQS over HTTP, Redis, a `sightline worker` process, pgvector."""

from __future__ import annotations

import json
import uuid

import boto3
import numpy as np
import pytest

from handlers.core import handle
from handlers.publish import CeleryPublisher
from handlers.rules import OwnerRule
from sightline import albums
from sightline.samples import real_photo, synthetic_jpeg
from sightline.sqs_source import poll_once
from tests.support import start_worker, stop_worker, wait_for, worker_env
from workers.inference import SceneLandmarkModel
from workers.photos import decode

PARIS = (48.85837, 2.29448)


@pytest.fixture
def bucket_with_events(moto_endpoint: str):
    """A bucket whose notifications go to an SQS queue, as S3 delivers them."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    name = f"photos-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    queue = sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    return s3, sqs, name, queue


def _active_release_matching(db, photo: bytes) -> None:
    """An active release whose one landmark (in Paris) has this photo's embedding as centroid.

    The embedding comes from the same untrained tiny network the worker runs, so the match
    tests the plumbing (GPS square, threshold, writes, album SQL), not recognition.
    """
    model = SceneLandmarkModel(weights=None, allow_untrained=True, arch="tiny")
    t = model.transform
    _, emb = model.predict([decode(photo, resize=t.resize, crop=t.crop).crop])
    thresholds = {"geo": 0.999, "general": 2.0, "verify": 2.0, "square_km": 1.0}
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status) "
            "VALUES ('demo-1', %s, %s, %s, 'active')",
            (emb.shape[1], model.meta.model_version, json.dumps(thresholds)),
        )
        cur.execute(
            "INSERT INTO landmarks VALUES ('demo-1', 'eiffel', 'Eiffel Tower', 'Paris', "
            "'France', 48.8584, 2.2945)"
        )
        cur.execute(
            "INSERT INTO centroids (release, landmark_id, embedding) "
            "VALUES ('demo-1', 'eiffel', %s)",
            (emb[0].astype(np.float32),),
        )


@pytest.mark.slow
def test_three_uploads_end_in_album_sql(
    bucket_with_events, db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """Three uploads (one real photo, two with GPS) are tagged by a real worker process and
    appear in the owner's scene and landmark albums; a text file is ignored."""
    s3, sqs, bucket, queue = bucket_with_events
    paris = synthetic_jpeg(seed=11, gps=PARIS, taken_at="2024:05:01 10:15:00", offset="+02:00")
    elsewhere = synthetic_jpeg(seed=12, gps=(59.9398, 30.3146))
    _active_release_matching(db, paris)
    worker = start_worker(worker_env(db_url, redis_url, moto_endpoint), log=tmp_path / "w.log")
    try:
        uploads = {
            "users/alice/trip/mountains.jpg": real_photo(),
            "users/alice/paris/tour eiffel+1.jpg": paris,
            "users/alice/spb/дворцовая.jpg": elsewhere,
            "users/alice/readme.txt": b"not a photo",
        }
        for key, data in uploads.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)
        publisher = CeleryPublisher(redis_url)
        seen: list = []

        def handler(event, context):
            result = handle(event, OwnerRule(), publisher)
            # Object records only: the s3:TestEvent the bucket sent first is ignored too.
            seen.extend(a for a in result.actions if a.event is not None)
            return result.response()

        wait_for(
            lambda: poll_once(sqs, queue, handler) and len(seen) >= 4,
            timeout=30,
            what="the S3 events",
        )
        assert sorted(a.action for a in seen) == ["ignore", "tag", "tag", "tag"]

        def tagged() -> bool:
            with db, db.cursor() as cur:
                cur.execute("SELECT count(*) FROM photos WHERE status = 'tagged'")
                return cur.fetchone()[0] == 3

        wait_for(tagged, timeout=120, what=f"3 tagged photos (worker log {tmp_path / 'w.log'})")
        with db, db.cursor() as cur:
            cur.execute("SELECT key, owner, gps_lat IS NOT NULL, width FROM photos ORDER BY key")
            rows = cur.fetchall()
            scene = albums.scene_albums(cur, "alice")
            marks = albums.landmark_albums(cur, "alice")
            photos_in_first = albums.album_photos(cur, "alice", "scene", scene[0]["album"])
            cur.execute("SELECT count(*) FROM photo_scenes")
            n_scenes = cur.fetchone()[0]
    finally:
        stop_worker(worker)
    assert rows == [
        ("users/alice/paris/tour eiffel+1.jpg", "alice", True, 800),
        ("users/alice/spb/дворцовая.jpg", "alice", True, 800),
        ("users/alice/trip/mountains.jpg", "alice", False, 960),
    ]
    assert n_scenes == 15
    assert sum(a["photos"] for a in scene) == 3
    assert len(photos_in_first) == scene[0]["photos"]
    assert [(m["country"], m["city"], m["name"], m["photos"]) for m in marks] == [
        ("France", "Paris", "Eiffel Tower", 1)
    ]


@pytest.mark.slow
def test_deleted_upload_leaves_the_albums(
    bucket_with_events, db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """A delete event after the upload turns the photo into a tombstone, out of every album."""
    s3, sqs, bucket, queue = bucket_with_events
    worker = start_worker(worker_env(db_url, redis_url, moto_endpoint), log=tmp_path / "w.log")
    publisher = CeleryPublisher(redis_url)

    def handler(event, context):
        return handle(event, OwnerRule(), publisher).response()

    def status() -> str | None:
        with db, db.cursor() as cur:
            cur.execute("SELECT status FROM photos")
            row = cur.fetchone()
            return row[0] if row else None

    try:
        s3.put_object(Bucket=bucket, Key="users/bob/a.jpg", Body=synthetic_jpeg(seed=1))
        # Keep delivering events (the bucket's s3:TestEvent may come first) until done.
        wait_for(
            lambda: poll_once(sqs, queue, handler) and status() == "tagged",
            timeout=120,
            what="tagged",
        )
        s3.delete_object(Bucket=bucket, Key="users/bob/a.jpg")
        wait_for(
            lambda: poll_once(sqs, queue, handler) and status() == "deleted",
            timeout=60,
            what="deleted",
        )
    finally:
        stop_worker(worker)
    with db, db.cursor() as cur:
        assert albums.scene_albums(cur, "bob") == []
