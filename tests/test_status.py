"""`sightline status` against a real Postgres, Redis and RabbitMQ."""

from __future__ import annotations

import json
import uuid

import pytest
from celery import Celery

from handlers.contract import normalize_sequencer
from tests.support import AMQP_URL, run_cli
from workers.store import status_item, write_photos


def _task(key: str, owner: str = "alice", seq: str = "10") -> dict:
    return {
        "bucket": "pics",
        "key": key,
        "version_id": None,
        "etag": None,
        "size": None,
        "sequencer": normalize_sequencer(seq),
        "event_time": None,
        "owner": owner,
    }


def _seed(db) -> None:
    """Photos in every final status, two failures a second apart, one active release."""
    with db, db.cursor() as cur:
        write_photos(
            cur,
            [
                status_item(_task("t1.jpg"), "tagged", None),
                status_item(_task("t2.jpg"), "tagged", None),
                status_item(_task("t3.jpg"), "tagged", None),
                status_item(_task("g.jpg"), "gone", "object gone: s3://pics/g.jpg"),
                status_item(_task("d.jpg"), "deleted", None),
                status_item(_task("f1.jpg", "bob"), "failed", "corrupt or truncated image: x"),
                status_item(_task("f2.jpg"), "failed", "gave up after retries: S3 unreachable"),
            ],
        )
        cur.execute(
            "UPDATE photos SET updated_at = now() - interval '1 minute' WHERE key = 'f1.jpg'"
        )
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status, "
            "activated_at) VALUES ('r1', 3, 'm1', '{}', 'active', now()), "
            "('r2', 3, 'm1', '{}', 'retagging', NULL)"
        )
        cur.execute(
            "INSERT INTO landmarks (release, landmark_id, name) VALUES "
            "('r1', 'eiffel', 'Eiffel Tower'), ('r1', 'louvre', 'Louvre'), ('r2', 'x', 'X')"
        )
        cur.execute(
            "INSERT INTO centroids (release, landmark_id, embedding) VALUES "
            "('r1', 'eiffel', '[1,0,0]'), ('r1', 'eiffel', '[0,1,0]'), ('r1', 'louvre', '[0,0,1]')"
        )


@pytest.mark.slow
def test_status_json_reports_photos_failures_release_and_redis_queues(db, db_url, redis_url):
    """status --json counts photos per status, lists failures newest first with reasons,
    names the active release with its sizes, and reads both queue depths from Redis."""
    _seed(db)
    sender = Celery(broker=redis_url, set_as_current=False)
    for key in ["a.jpg", "b.jpg", "c.jpg"]:
        sender.send_task("sightline.tag", kwargs=_task(key), queue="tag")
    sender.send_task("sightline.forget", kwargs=_task("d.jpg"), queue="maintenance")
    out = run_cli("status", "--json", env={"DATABASE_URL": db_url, "CELERY_BROKER_URL": redis_url})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["photos"] == {
        "tagged": 3,
        "failed": 2,
        "gone": 1,
        "deleted": 1,
        "ignored": 0,
        "total": 7,
    }
    assert [f["key"] for f in report["last_failures"]] == ["f2.jpg", "f1.jpg"]
    assert report["last_failures"][1]["owner"] == "bob"
    assert report["last_failures"][1]["error"] == "corrupt or truncated image: x"
    assert sorted((f["reason"], f["photos"]) for f in report["failure_reasons"]) == [
        ("corrupt or truncated image", 1),
        ("gave up after retries", 1),
    ]
    [active] = report["active_releases"]
    assert (active["version"], active["landmarks"], active["centroids"]) == ("r1", 2, 3)
    assert [(r["version"], r["status"]) for r in report["other_releases"]] == [("r2", "retagging")]
    queues = report["queues"]
    assert queues["kind"] == "redis" and queues["error"] is None
    assert queues["depths"] == {"tag": 3, "maintenance": 1}
    assert queues["in_flight"] == {"tag": 0, "maintenance": 0}
    assert report["workers"] == [] and report["scene_map"] is None


@pytest.mark.slow
def test_status_shows_in_flight_oldest_waiting_and_live_workers(
    db, db_url, redis_url, moto_endpoint, tmp_path
):
    """A worker holding a batch open: its photos count in flight, not ready; the oldest
    waiting photo is aged from its event time; the worker is listed with its model, scene
    map version and queues, and leaves the list when it stops."""
    from datetime import UTC, datetime, timedelta

    from tests.support import start_worker, stop_worker, wait_for, worker_env

    env = worker_env(db_url, redis_url, moto_endpoint)
    worker = start_worker(
        env, "--queues=tag", "--batch-size=100", "--batch-wait-ms=120000", log=tmp_path / "w.log"
    )
    sender = Celery(broker=redis_url, set_as_current=False)
    status_env = {"DATABASE_URL": db_url, "CELERY_BROKER_URL": redis_url}
    try:
        wait_for(lambda: "ready." in (tmp_path / "w.log").read_text(), timeout=90, what="ready")
        for key in ["a.jpg", "b.jpg", "c.jpg"]:
            sender.send_task("sightline.tag", kwargs=_task(key), queue="tag")

        def held() -> dict | None:
            out = run_cli("status", "--json", env=status_env)
            report = json.loads(out.stdout)
            return report if report["queues"]["in_flight"]["tag"] == 3 else None

        report = wait_for(held, timeout=60, what="three photos in flight")
        assert report["queues"]["depths"]["tag"] == 0
        (w,) = report["workers"]
        assert w["model_version"] == "untrained-tiny-seed0" and w["queues"] == ["tag"]
        assert w["scene_map_version"] == report["scene_map"]["version"] == 1
        # Waiting in the maintenance queue (no worker reads it): the oldest is 90 s old.
        old = (datetime.now(UTC) - timedelta(seconds=90)).isoformat()
        sender.send_task(
            "sightline.forget", kwargs={**_task("e.jpg"), "event_time": old}, queue="maintenance"
        )
        sender.send_task("sightline.forget", kwargs=_task("d.jpg"), queue="maintenance")
        report = json.loads(run_cli("status", "--json", env=status_env).stdout)
        oldest = report["queues"]["oldest_waiting"]
        assert (oldest["queue"], oldest["key"]) == ("maintenance", "e.jpg")  # the next out
        assert 90 <= oldest["age_s"] < 150
        text = run_cli("status", env=status_env).stdout
        assert "  tag                     0            3" in text.splitlines()
    finally:
        stop_worker(worker)
    report = json.loads(run_cli("status", "--json", env=status_env).stdout)
    assert report["workers"] == []  # a clean stop removes its row


@pytest.mark.slow
def test_status_text_is_readable(db, db_url, redis_url):
    """The plain output names each section and the depths, one line per fact."""
    _seed(db)
    out = run_cli("status", env={"DATABASE_URL": db_url, "CELERY_BROKER_URL": redis_url})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "  tagged                3" in lines
    assert any(
        line.startswith("active release  r1 (model m1, 2 landmarks, 3 centroids") for line in lines
    )
    assert "  queue               ready    in flight" in lines
    assert "  tag                     0            0" in lines
    assert "live workers    0" in lines
    assert any("s3://pics/f2.jpg" in line and "gave up after retries" in line for line in lines)


@pytest.mark.slow
def test_status_reads_rabbitmq_queue_depths_and_consumers(db_url):
    """On RabbitMQ, depths and consumer counts come from the broker; an undeclared queue is
    reported empty."""
    from kombu import Connection, Exchange, Queue

    name = f"st-{uuid.uuid4().hex[:8]}"
    missing = f"st-missing-{uuid.uuid4().hex[:8]}"
    with Connection(AMQP_URL) as conn:
        queue = Queue(name, Exchange(name, type="direct"), routing_key=name, auto_delete=False)
        producer = conn.Producer(serializer="json")
        for i in range(2):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key=name, declare=[queue])
        try:
            out = run_cli(
                "status",
                "--json",
                f"--queues={name},{missing}",
                env={"DATABASE_URL": db_url, "CELERY_BROKER_URL": AMQP_URL},
            )
        finally:
            queue.bind(conn.default_channel).delete()
    assert out.returncode == 0, out.stderr
    queues = json.loads(out.stdout)["queues"]
    assert queues["kind"] == "rabbitmq" and queues["error"] is None
    assert queues["depths"] == {name: 2, missing: 0}
    assert queues["consumers"] == {name: 0, missing: 0}
    assert "guest:guest" not in queues["broker"]  # the password is masked
    # In flight needs the management API: counted when it answers, else said to be unknown.
    if queues["in_flight_note"] is None:
        assert queues["in_flight"] == {name: 0, missing: 0}
    else:
        assert queues["in_flight_note"].startswith("unknown: the RabbitMQ management API")
        assert queues["in_flight"] == {name: None, missing: None}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("broker", "kind", "error"),
    [
        ("sqs://", "sqs", None),
        ("memory://", "memory", None),
        ("redis://127.0.0.1:1/0", "redis", "OperationalError"),
    ],
)
def test_status_says_unknown_for_other_or_unreachable_brokers(db_url, broker, kind, error):
    """A broker it cannot read (another kind, or down) gives unknown depths, not a failure."""
    out = run_cli(
        "status", "--json", env={"DATABASE_URL": db_url, "CELERY_BROKER_URL": broker}, timeout=90
    )
    assert out.returncode == 0, out.stderr
    queues = json.loads(out.stdout)["queues"]
    assert queues["kind"] == kind
    assert queues["depths"] == {"tag": None, "maintenance": None}
    assert (queues["error"] or "").startswith(error or "")
    assert (queues["error"] is None) == (error is None)


@pytest.mark.slow
def test_status_on_a_database_without_schema_is_a_one_line_error(empty_db_url):
    """A database never upgraded gets one line saying what to run, exit status 2."""
    out = run_cli("status", env={"DATABASE_URL": empty_db_url, "CELERY_BROKER_URL": "memory://"})
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "sightline: error: the database has no sightline schema: run `sightline db upgrade`"
    )


@pytest.mark.slow
def test_status_says_which_heads_are_real(db, db_url, redis_url, tmp_path):
    """With an imported Places365 checkpoint (real scene head, untrained embedding head),
    status names each head's provenance, says landmark matching is off, and counts tagged
    photos per model and per head."""
    import torch
    from torchvision.models import resnet

    from models.weights_import import import_weights

    src = tmp_path / "tiny_places365.pth.tar"
    net = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=365)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 1, "arch": "tiny", "state_dict": state, "best_prec1": 0.0}, src)
    out = tmp_path / "served.safetensors"
    meta = import_weights(src, source="csail-places365", out=out).meta
    _seed(db)
    with db, db.cursor() as cur:
        cur.execute(
            "UPDATE photos SET model_version = 'm2', scene_trained = true, "
            "embedding_trained = false WHERE key = 't1.jpg'"
        )
    env = {"DATABASE_URL": db_url, "CELERY_BROKER_URL": redis_url, "SIGHTLINE_WEIGHTS": str(out)}
    report = json.loads(run_cli("status", "--json", env=env).stdout)
    model = report["model"]
    assert model["heads"]["scene"]["trained"] is True
    assert "csail-places365 tiny_places365.pth.tar" in model["heads"]["scene"]["source"]
    assert model["heads"]["embedding"]["trained"] is False
    assert model["serves_landmarks"] is False
    assert model["model_version"].startswith(meta.version + "+")
    assert {"model_version": "m2", "scene_trained": True, "embedding_trained": False,
            "photos": 1} in report["tagged_by"]  # fmt: skip
    text = run_cli("status", env=env).stdout.splitlines()
    assert any(ln.startswith("  scene head            real (imported from") for ln in text)
    assert any("UNTRAINED" in ln and "landmark matching off" in ln for ln in text)
    assert "  tagged by m2: 1 (scene head real, embedding head UNTRAINED)" in text


def test_status_shows_every_active_release_with_its_model(db) -> None:
    """During a model switch one release per model version is active: the report lists both
    (by model) and the text has one 'active release' line each, naming its model; with none
    active it says none."""
    from sightline.commands.status import _text
    from sightline.queues import queue_depths
    from sightline.status import database_report

    _seed(db)
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status, "
            "activated_at) VALUES ('r0', 3, 'm0', '{}', 'active', now()), "
            "('rx', 3, 'm0', '{}', 'retired', NULL)"
        )
        cur.execute("INSERT INTO landmarks (release, landmark_id, name) VALUES ('r0', 'a', 'A')")

    def report() -> dict:
        with db, db.cursor() as cur:
            r = database_report(cur, failures=0)
        r["queues"] = queue_depths(None, ["tag"]).to_json()
        r["model"] = {"weights": None, "untrained_allowed": True}
        return r

    r = report()
    assert [(a["version"], a["model_version"]) for a in r["active_releases"]] == [
        ("r0", "m0"),
        ("r1", "m1"),
    ]
    lines = [line for line in _text(r).splitlines() if line.startswith("active release")]
    assert len(lines) == 2
    assert lines[0].startswith("active release  r0 (model m0, 1 landmarks, 0 centroids")
    assert lines[1].startswith("active release  r1 (model m1, 2 landmarks, 3 centroids")
    with db, db.cursor() as cur:
        cur.execute("UPDATE releases SET status = 'retired' WHERE status = 'active'")
    r = report()
    assert r["active_releases"] == []
    assert "active release  none" in _text(r).splitlines()


def test_demo_names_every_active_release() -> None:
    """The demo's landmark section names each active release with its model (two during a
    switch), says when none is active and when matching is off."""
    from sightline.commands.demo import landmark_lines

    two = [("r0", "m0"), ("r1", "m1")]
    mark = {"country": "France", "city": "Paris", "name": "Eiffel Tower", "photos": 2}
    assert landmark_lines(two, [mark]) == [
        "  active releases: r0 (model m0), r1 (model m1)",
        "  France / Paris / Eiffel Tower: 2 photo(s)",
    ]
    assert landmark_lines(two[:1], [])[0] == "  active release: r0 (model m0)"
    assert "no landmark found" in landmark_lines(two[:1], [])[1]
    assert "no active landmark release" in landmark_lines([], [])[0]
    assert "matching is off" in landmark_lines(two, [mark], matching_off=True)[0]
