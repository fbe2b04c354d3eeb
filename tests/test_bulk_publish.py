"""The bulk publishing road of library jobs (handlers/publish.py ``bulk=True``) on Redis: the
messages are the ones ``send_task`` makes, byte for byte but for their ids, and a worker
runs them alike."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
import redis

from handlers.contract import TAG_TASK
from handlers.publish import CeleryPublisher, _Bulk, _Pushes
from sightline.samples import synthetic_jpeg
from tests.support import object_task, start_worker, stop_worker, wait_for, worker_env
from workers import jobs


def _tasks() -> list[dict]:
    """Tasks whose keys need escaping in every layer (JSON, repr, base64 of the body)."""
    keys = ["users/alice/a.jpg", 'users/bob/été "x" \\ +%2B.jpg', "users/carol/ünï/😀.png"]
    tasks = []
    for n, key in enumerate(keys):
        task = object_task("photos", key, seq=None, owner=key.split("/")[1])
        task.update(etag=f"{n:032x}", size=n * 1000 + 1, job_id=40 + n)
        if n == 1:
            task["force"] = True
        tasks.append(task)
    return tasks


def _normalised(raw: bytes) -> str:
    """A pushed message as its JSON text with its own task id and delivery tag blanked."""
    text = raw.decode()
    message = json.loads(text)
    return text.replace(message["headers"]["id"], "ID").replace(
        message["properties"]["delivery_tag"], "TAG"
    )


def _pushed(client: redis.Redis, queue: str) -> list[bytes]:
    raw = client.lrange(queue, 0, -1)[::-1]  # LPUSH then BRPOP: oldest last in the list
    client.delete(queue)
    return raw


def test_bulk_messages_are_send_tasks_own(redis_url: str) -> None:
    """The same tasks by send_task and by the bulk road: the same JSON text in the same
    queue, in the same order, with only the ids differing (fresh ones, all distinct)."""
    queue = f"bulk-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    publisher = CeleryPublisher(redis_url, queues={TAG_TASK: queue})
    tasks = _tasks()
    try:
        assert publisher.publish([(TAG_TASK, t) for t in tasks]) == [None] * len(tasks)
        normal = _pushed(client, queue)
        publisher.bulk = True
        assert publisher.publish([(TAG_TASK, t) for t in tasks]) == [None] * len(tasks)
        bulk = _pushed(client, queue)
    finally:
        publisher.close()
    assert len(normal) == len(bulk) == len(tasks)
    assert [_normalised(m) for m in bulk] == [_normalised(m) for m in normal]
    ids = [json.loads(m)["headers"]["id"] for m in normal + bulk]
    tags = [json.loads(m)["properties"]["delivery_tag"] for m in normal + bulk]
    assert len(set(ids)) == len(set(tags)) == 2 * len(tasks)
    decoded = [json.loads(m) for m in bulk]
    assert [m["headers"]["root_id"] for m in decoded] == [m["headers"]["id"] for m in decoded]


def test_template_and_full_build_agree(redis_url: str) -> None:
    """A message filled into the probe-checked template is the one built the full way
    (Celery, then kombu down to the Redis transport) with the same ids."""
    queue = f"bulk-{uuid.uuid4().hex[:8]}"
    publisher = CeleryPublisher(redis_url, queues={TAG_TASK: queue}, bulk=True)
    try:
        with publisher.app.producer_or_acquire() as producer:
            bulk = _Bulk(publisher.app, producer)
            target = bulk.route(queue, TAG_TASK)
            template = bulk.template(target, TAG_TASK)
            assert template is not None
            for task in _tasks():
                pushes = _Pushes()
                message, _ = bulk.build(target, TAG_TASK, task, pushes)
                ((command, (key, full)),) = pushes.commands
                task_id = message["headers"]["id"]
                tag = message["properties"]["delivery_tag"]
                assert (command, key) == ("lpush", template.key)
                assert template.fill(bulk, task, task_id, tag) == full
    finally:
        publisher.close()


@pytest.mark.parametrize("bulk", [False, True])
def test_the_given_broker_wins_over_the_environment(redis_url, monkeypatch, bulk) -> None:
    """CELERY_BROKER_URL names another broker (Celery would prefer it to ``broker=``): the
    publisher still delivers to the URL it was given."""
    from sightline.embedded import free_port

    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    queue = f"bulk-{uuid.uuid4().hex[:8]}"
    publisher = CeleryPublisher(redis_url, queues={TAG_TASK: queue}, bulk=bulk, timeout_s=1)
    try:
        assert publisher.publish([(TAG_TASK, t) for t in _tasks()]) == [None] * 3
    finally:
        publisher.close()
    assert len(_pushed(redis.Redis.from_url(redis_url), queue)) == 3


def test_bulk_batch_to_a_dead_broker_fails_every_task() -> None:
    """Nothing answers on the port: every task of the batch comes back with the error (its
    source retries them all), nothing raises."""
    from sightline.embedded import free_port

    publisher = CeleryPublisher(f"redis://127.0.0.1:{free_port()}/0", bulk=True, timeout_s=1)
    try:
        errors = publisher.publish([(TAG_TASK, t) for t in _tasks()])
    finally:
        publisher.close()
    assert len(errors) == 3 and all(isinstance(e, Exception) for e in errors)


@pytest.mark.slow
def test_worker_runs_bulk_tasks_as_send_tasks(
    db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """A real worker consumes tasks of both roads alike: job ids counted, ``force`` re-tags
    an unchanged photo and its absence makes it a no-op, on each road."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"bulk-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    roads = {"send_task": "users/alice/normal.jpg", "bulk": "users/alice/bulk.jpg"}
    etags = {}
    for n, key in enumerate(roads.values()):
        put = s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=n))
        etags[key] = put["ETag"].strip('"')
    publisher = CeleryPublisher(redis_url)
    worker = start_worker(
        worker_env(db_url, redis_url, moto_endpoint),
        "--batch-size",
        "4",
        "--batch-wait-ms",
        "100",
        log=tmp_path / "worker.log",
    )

    def run_job(**extra) -> jobs.Job:
        with db, db.cursor() as cur:
            job_id = jobs.create(cur, "backfill", {"test": "bulk"})
        for road, key in roads.items():
            task = object_task(bucket, key, seq=None, owner="alice")
            task.update(etag=etags[key], job_id=job_id, **extra)
            publisher.bulk = road == "bulk"
            assert publisher.publish([(TAG_TASK, task)]) == [None]

        def counted() -> jobs.Job | None:
            with db, db.cursor() as cur:
                job = jobs.get(cur, job_id)
            return job if job.done + job.failed + job.skipped == len(roads) else None

        return wait_for(counted, timeout=120, what=f"job {job_id} ({tmp_path})")

    try:
        first = run_job()
        forced = run_job(force=True)
        repeat = run_job()
    finally:
        stop_worker(worker)
        publisher.close()
    assert (first.done, first.skipped, first.failed) == (2, 0, 0)
    assert (forced.done, forced.skipped, forced.failed) == (2, 0, 0)
    assert (repeat.done, repeat.skipped, repeat.failed) == (0, 2, 0)
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT key, status, job_id FROM photos WHERE bucket = %s ORDER BY key",
            (bucket,),
        )
        rows = cur.fetchall()
    assert rows == sorted((key, "tagged", repeat.id) for key in roads.values())
    log = (tmp_path / "worker.log").read_text()
    for key in roads.values():
        assert log.count(f"tagged s3://{bucket}/{key}") == 2, log[-2000:]


def test_batch_ids_are_version_4_uuids_as_kombu_writes_them() -> None:
    """The ids drawn for a whole batch at once: distinct, and each what ``str(uuid4())``
    (kombu's ``uuid()``) would write: version 4, the RFC variant, 8-4-4-4-12 hex."""
    from kombu.utils.uuid import uuid as kombu_uuid

    from handlers.publish import _uuid4s

    ids = _uuid4s(5000)
    assert len(ids) == len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
    assert [len(p) for p in ids[0].split("-")] == [len(p) for p in kombu_uuid().split("-")]
    # every version and variant nibble takes its fixed value; the others vary
    assert {t[14] for t in ids} == {"4"} and {t[19] for t in ids} == set("89ab")
    assert len({t[0] for t in ids}) == 16


def test_template_encodes_bodies_as_kombu_does(redis_url: str) -> None:
    """The template takes the lean body encoding (one JSON encoder, base64) only because it
    gives kombu's bytes: for keys that need escaping, both encodings fill the same message."""
    queue = f"bulk-{uuid.uuid4().hex[:8]}"
    publisher = CeleryPublisher(redis_url, queues={TAG_TASK: queue}, bulk=True)
    try:
        with publisher.app.producer_or_acquire() as producer:
            bulk = _Bulk(publisher.app, producer)
            template = bulk.template(bulk.route(queue, TAG_TASK), TAG_TASK)
            assert template is not None and template.fast
            for task in _tasks():
                lean = template.fill(bulk, task, "i", "t")
                template.fast = False
                assert template.fill(bulk, task, "i", "t") == lean
                template.fast = True
    finally:
        publisher.close()
