"""Worker observability: Prometheus metrics from real batches, JSON logs with photo identity."""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sightline.embedded import free_port
from sightline.samples import synthetic_jpeg
from tests.support import object_task, run_cli, start_worker, stop_worker, wait_for, worker_env
from workers.logs import JsonFormatter, photo_fields
from workers.metrics import STAGES, WorkerMetrics, lag_seconds
from workers.runtime import WorkerRuntime
from workers.settings import Settings
from workers.store import status_item, write_photos


@pytest.fixture
def bucket(moto_endpoint: str) -> tuple:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    name = f"m-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _runtime(db_url: str, endpoint: str, metrics: WorkerMetrics, **kw) -> WorkerRuntime:
    settings = Settings(allow_untrained=True, arch="tiny", s3_endpoint_url=endpoint, **kw)
    return WorkerRuntime(settings, db_url, metrics=metrics)


def _value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_batch_metrics_count_outcomes_reasons_stages_and_lag(
    bucket, db, db_url, moto_endpoint
) -> None:
    """A batch counts each photo's outcome, a bad photo as a 'photo' failure, its size, one
    latency per stage, and the lag from each written photo's event time."""
    s3, name = bucket
    s3.put_object(Bucket=name, Key="a.jpg", Body=synthetic_jpeg(seed=1))
    s3.put_object(Bucket=name, Key="b.jpg", Body=synthetic_jpeg(seed=2))
    s3.put_object(Bucket=name, Key="bad.jpg", Body=b"\xff\xd8 broken")
    s3.put_object(Bucket=name, Key="old.jpg", Body=synthetic_jpeg(seed=3))
    with db, db.cursor() as cur:
        write_photos(cur, [status_item(object_task(name, "old.jpg", seq="99"), "deleted", None)])
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    metrics = WorkerMetrics()
    rt = _runtime(db_url, moto_endpoint, metrics)
    keys = ["a.jpg", "b.jpg", "bad.jpg", "missing.jpg", "old.jpg"]
    outcomes = rt.tag_batch([object_task(name, k, event_time=an_hour_ago) for k in keys])
    assert outcomes == ["tagged", "tagged", "failed", "gone", "stale"]

    for outcome, n in {"tagged": 2, "failed": 1, "gone": 1, "stale": 1, "retry": 0}.items():
        assert _value(metrics, "sightline_photos_total", outcome=outcome) == n, outcome
    assert _value(metrics, "sightline_photo_failures_total", reason="photo") == 1
    assert _value(metrics, "sightline_photo_failures_total", reason="write_refused") == 0
    assert _value(metrics, "sightline_batch_size_count") == 1
    assert _value(metrics, "sightline_batch_size_sum") == 5
    for stage in STAGES:
        assert _value(metrics, "sightline_stage_seconds_count", stage=stage) == 1, stage
        assert _value(metrics, "sightline_stage_seconds_sum", stage=stage) > 0, stage
    # Four rows written (the stale one was not), each about an hour behind its event.
    assert _value(metrics, "sightline_queue_lag_seconds_count") == 4
    assert 4 * 3600 <= _value(metrics, "sightline_queue_lag_seconds_sum") < 4 * 3700


def test_unreachable_s3_counts_a_retry_and_a_transient_failure(db_url) -> None:
    """A photo that will be retried is counted as a retry and a 'transient' failure."""
    metrics = WorkerMetrics()
    rt = _runtime(db_url, "http://127.0.0.1:9", metrics, s3_timeout_s=1.0)
    rt.tag_batch([object_task("b", "x.jpg")])
    assert _value(metrics, "sightline_photos_total", outcome="retry") == 1
    assert _value(metrics, "sightline_photo_failures_total", reason="transient") == 1
    assert _value(metrics, "sightline_photos_total", outcome="tagged") == 0


def test_parking_counts_a_parked_failure(db, db_url) -> None:
    """Parking a photo after its retries counts a 'parked' failure and leaves it failed."""
    metrics = WorkerMetrics()
    rt = _runtime(db_url, "http://127.0.0.1:9", metrics)
    rt.park(object_task("b", "p.jpg"), "S3 unreachable")
    assert _value(metrics, "sightline_photo_failures_total", reason="parked") == 1
    with db, db.cursor() as cur:
        cur.execute("SELECT status FROM photos WHERE key = 'p.jpg'")
        assert cur.fetchone() == ("failed",)


def test_an_unknown_failure_reason_is_refused() -> None:
    """Failure reasons come from a fixed set: free text is refused, not made a label."""
    with pytest.raises(ValueError, match="unknown failure reason"):
        WorkerMetrics().failure("corrupt or truncated image: broken data stream")


@pytest.mark.parametrize(
    ("event_time", "expected"),
    [
        ("2024-05-01T10:00:00.000Z", 3600.0),
        ("2024-05-01T12:00:00+02:00", 3600.0),
        ("2024-05-01T10:00:00", 3600.0),  # naive: taken as UTC
        ("2024-05-01T11:00:05Z", 0.0),  # ahead of our clock: skew, no lag
        ("not a time", None),
        (None, None),
    ],
)
def test_lag_seconds(event_time: str | None, expected: float | None) -> None:
    """Queue lag is measured from the event's UTC time; skew is clamped, garbage ignored."""
    now = datetime(2024, 5, 1, 11, 0, tzinfo=UTC).timestamp()
    assert lag_seconds(event_time, now) == expected


def test_json_formatter_lifts_the_photo_identity() -> None:
    """A JSON log line carries bucket, key, owner as fields, and the exception text."""
    record = logging.LogRecord(
        "sightline.worker", logging.WARNING, __file__, 1, "bad %s", ("x",), None
    )
    record.photo = photo_fields(
        {**object_task("pics", "users/alice/a b+é.jpg"), "version_id": "v1"}
    )["photo"]
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "bad x" and line["level"] == "WARNING"
    assert (line["bucket"], line["key"], line["owner"], line["version_id"]) == (
        "pics",
        "users/alice/a b+é.jpg",
        "alice",
        "v1",
    )
    assert "ValueError: boom" in line["exception"]


@pytest.mark.slow
def test_worker_serves_metrics_and_logs_json(
    bucket, db, db_url, redis_url, moto_endpoint, tmp_path
) -> None:
    """`sightline worker` with SIGHTLINE_METRICS_PORT serves /metrics counting what it did,
    and with SIGHTLINE_LOG_FORMAT=json writes nothing but JSON lines, Celery's included: one
    per photo outcome with its identity, reason and timings."""
    from celery import Celery

    s3, name = bucket
    s3.put_object(Bucket=name, Key="users/alice/ok.jpg", Body=synthetic_jpeg(seed=4))
    s3.put_object(Bucket=name, Key="users/alice/bad.jpg", Body=b"not a jpeg at all")
    port = free_port()
    env = worker_env(
        db_url,
        redis_url,
        moto_endpoint,
        SIGHTLINE_METRICS_PORT=str(port),
        SIGHTLINE_LOG_FORMAT="json",
    )
    log = tmp_path / "w.log"
    worker = start_worker(env, "--batch-wait-ms=100", log=log)
    try:
        sender = Celery(broker=redis_url, set_as_current=False)
        for key in ["users/alice/ok.jpg", "users/alice/bad.jpg"]:
            sender.send_task("sightline.tag", kwargs=object_task(name, key), queue="tag")

        def done() -> bool:
            with db, db.cursor() as cur:
                cur.execute("SELECT count(*) FROM photos WHERE status IN ('tagged', 'failed')")
                return cur.fetchone()[0] == 2

        wait_for(done, timeout=120, what=f"two photos written ({log})")

        def scrape() -> dict:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(body.decode())
                for s in fam.samples
            }

        # The counters move after the batch returns, a moment after its rows commit.
        samples = wait_for(
            lambda: (
                (s := scrape())[("sightline_photos_total", (("outcome", "tagged"),))] == 1 and s
            ),
            timeout=30,
            what="the tagged photo counted",
        )
        assert samples[("sightline_photos_total", (("outcome", "failed"),))] == 1
        assert samples[("sightline_photo_failures_total", (("reason", "photo"),))] == 1
        assert samples[("sightline_stage_seconds_count", (("stage", "model"),))] >= 1
    finally:
        stop_worker(worker)
    assert worker.returncode == 0
    text = log.read_text()
    # Every line the worker wrote, Celery's own (start, ready, shutdown) included, is JSON.
    lines = [json.loads(x) for x in text.splitlines()]
    assert any(x["logger"].startswith("celery") for x in lines), text[-2000:]
    assert any("UNTRAINED" in x["message"] for x in lines)
    failed = [x for x in lines if x.get("key") == "users/alice/bad.jpg"]
    assert len(failed) == 1 and failed[0]["bucket"] == name and failed[0]["owner"] == "alice"
    assert failed[0]["level"] == "WARNING" and failed[0]["outcome"] == "failed"
    assert failed[0]["error"]
    (tagged,) = [x for x in lines if x.get("key") == "users/alice/ok.jpg"]
    assert tagged["outcome"] == "tagged" and tagged["level"] == "INFO"
    assert tagged["batch_photos"] >= 1
    assert {"check", "fetch", "decode", "model", "write", "total"} <= set(tagged["timings_ms"])
    assert tagged["timings_ms"]["total"] >= tagged["timings_ms"]["model"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SIGHTLINE_METRICS_PORT", "nine", "SIGHTLINE_METRICS_PORT must be a TCP port (1-65535)"),
        ("SIGHTLINE_LOG_FORMAT", "xml", "SIGHTLINE_LOG_FORMAT must be one of text, json"),
    ],
)
def test_bad_observability_settings_are_one_line_errors(variable, value, message) -> None:
    """A bad metrics port or log format stops the worker with one clear line."""
    result = run_cli(
        "worker", env={variable: value, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"sightline: error: {message}, got {value!r}"]
