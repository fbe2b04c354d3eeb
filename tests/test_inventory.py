"""`sightline backfill --inventory`: S3 Inventory manifests with CSV, CSV.gz and Parquet data
files in moto's S3, tasks published to Redis, and resuming from any page's position."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import uuid

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from sightline.backfill.sources import Manifest, SourceError, inventory_pages, read_manifest
from tests.support import run_cli, worker_env
from workers import jobs
from workers.db import connect

SCHEMA = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag"
WHEN = "2024-05-01T10:00:00.000Z"


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _parquet(rows: list[dict]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


@pytest.fixture
def inventory(moto_endpoint: str) -> tuple:
    """A source bucket's inventory in three data files; returns (s3, manifest URI, expected
    current keys in order)."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    dest = f"inv-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=dest)
    src = "photos-src"
    plain = _csv([
        [src, "users/a/1.jpg", "v1", "true", "false", "10", WHEN, "e1"],
        [src, "users/a/old.jpg", "v0", "false", "false", "10", WHEN, "e0"],  # not the latest
        [src, "users/a/my+holiday+photo.jpg", "", "true", "false", "10", WHEN, "e2"],
        [src, "users/a/gone.jpg", "v9", "true", "true", "", WHEN, ""],  # a delete marker
    ])  # fmt: skip
    zipped = gzip.compress(_csv([
        [src, "users/b/caf%C3%A9%2B1.jpg", "", "true", "false", "10", WHEN, "e3"],
        [src, "users/b/notes.txt", "", "true", "false", "10", WHEN, "e4"],
    ]))  # fmt: skip
    parquet = _parquet([
        {"bucket": src, "key": "users/c/x y.jpg", "version_id": None, "is_latest": True,
         "is_delete_marker": False, "size": 10, "last_modified_date": WHEN, "e_tag": "e5"},
        {"bucket": src, "key": "users/c/2.jpg", "version_id": None, "is_latest": True,
         "is_delete_marker": False, "size": 10, "last_modified_date": WHEN, "e_tag": "e6"},
    ])  # fmt: skip
    files = {"data/a.csv": plain, "data/b.csv.gz": zipped, "data/c.parquet": parquet}
    for key, body in files.items():
        s3.put_object(Bucket=dest, Key=key, Body=body)
    manifests = {}
    for fmt, names in (("CSV", ["data/a.csv", "data/b.csv.gz"]), ("Parquet", ["data/c.parquet"])):
        manifest = {
            "sourceBucket": src,
            "destinationBucket": f"arn:aws:s3:::{dest}",
            "version": "2016-11-30",
            "fileFormat": fmt,
            "fileSchema": SCHEMA,
            "files": [{"key": k, "size": len(files[k]), "MD5checksum": "x"} for k in names],
        }
        key = f"{src}/cfg/2024-05-02T00-00Z/{fmt.lower()}/manifest.json"
        s3.put_object(Bucket=dest, Key=key, Body=json.dumps(manifest).encode())
        manifests[fmt] = f"s3://{dest}/{key}"
    expected = {
        "CSV": ["users/a/1.jpg", "users/a/my holiday photo.jpg", "users/b/café+1.jpg",
                "users/b/notes.txt"],
        "Parquet": ["users/c/x y.jpg", "users/c/2.jpg"],
    }  # fmt: skip
    return s3, manifests, expected


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_inventory_rows_resume_from_any_page(inventory, fmt: str) -> None:
    """Current objects only (no old versions, no delete markers), keys decoded; starting from
    any page's position yields exactly the rows after it."""
    s3, manifests, expected = inventory
    manifest = read_manifest(s3, manifests[fmt])
    pages = list(inventory_pages(s3, manifest, None, page_size=1))
    keys = [o.key for p in pages for o in p.objects]
    assert keys == expected[fmt]
    first = pages[0].objects[0] if pages[0].objects else pages[1].objects[0]
    assert first.etag in {"e1", "e5"} and first.bucket == "photos-src"
    for n, page in enumerate(pages):
        rest = [o.key for p in inventory_pages(s3, manifest, page.position, 1) for o in p.objects]
        assert rest == [o.key for p in pages[n + 1 :] for o in p.objects]


@pytest.mark.slow
def test_bad_manifest_is_a_one_line_error(tmp_path) -> None:
    """A file that is not an inventory manifest, or an ORC one, is refused in one line."""
    with pytest.raises(SourceError, match=r"not an S3 Inventory manifest\.json"):
        Manifest.parse('{"files": []}')
    orc = {"sourceBucket": "s", "destinationBucket": "d", "fileFormat": "ORC", "files": []}
    with pytest.raises(SourceError, match="ORC is not supported"):
        Manifest.parse(json.dumps(orc))
    bad = tmp_path / "manifest.json"
    bad.write_text("[1, 2")
    out = run_cli(
        "backfill",
        "--inventory",
        str(bad),
        env={"CELERY_BROKER_URL": "memory://", "DATABASE_URL": "postgresql:///x"},
    )
    assert out.returncode == 2
    assert out.stderr.startswith(f"sightline: error: {bad}: not an S3 Inventory manifest.json")
    assert len(out.stderr.splitlines()) == 1


def _queued(redis_url: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url)
    messages = [json.loads(m) for m in client.lrange("tag", 0, -1)]
    return [json.loads(base64.b64decode(m["body"]))[1] for m in messages]


@pytest.mark.slow
def test_inventory_backfill_publishes_upload_tasks(
    inventory, db_url, redis_url, moto_endpoint
) -> None:
    """Both manifests publish one task per current image, owner from the key, job id on it."""
    _, manifests, expected = inventory
    env = worker_env(db_url, redis_url, moto_endpoint)
    jobs_seen = []
    for fmt in ("CSV", "Parquet"):
        out = run_cli("backfill", "--inventory", manifests[fmt], "--json", "--page-size", "2",
                      env=env)  # fmt: skip
        assert out.returncode == 0, out.stderr
        job = json.loads(out.stdout)
        images = [k for k in expected[fmt] if k.endswith(".jpg")]
        assert (job["listed"], job["published"]) == (len(expected[fmt]), len(images))
        jobs_seen.append(job["id"])
    tasks = _queued(redis_url)
    assert sorted(t["key"] for t in tasks) == sorted(
        k for f in ("CSV", "Parquet") for k in expected[f] if k.endswith(".jpg")
    )
    one = next(t for t in tasks if t["key"] == "users/a/1.jpg")
    assert (one["bucket"], one["owner"], one["etag"], one["version_id"]) == (
        "photos-src",
        "a",
        "e1",
        "v1",
    )
    assert {t["job_id"] for t in tasks} == set(jobs_seen)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("CSV", b"\x1f\x8bnot gzip at all"),
        ("CSV", gzip.compress(b"a,b\n" * 100)[:10] + b"\x00\xff" * 50),  # a gzip of garbage
        ("CSV", b"\xff\xfe\x00bad"),
        ("Parquet", b"a,b\n"),
    ],
)
def test_corrupt_inventory_file_fails_the_job_in_one_line(
    moto_endpoint, db, db_url, redis_url, fmt: str, body: bytes
) -> None:
    """A data file that is bad gzip, not UTF-8 or not Parquet: one line naming it, exit 2,
    and the job failed with that reason (not left running to be resumed into the same crash)."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    dest = f"inv-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=dest)
    s3.put_object(Bucket=dest, Key="data/bad", Body=body)
    manifest = {"sourceBucket": "src", "destinationBucket": f"arn:aws:s3:::{dest}",
                "fileFormat": fmt, "fileSchema": SCHEMA,
                "files": [{"key": "data/bad", "size": len(body), "MD5checksum": "x"}]}  # fmt: skip
    s3.put_object(Bucket=dest, Key="m/manifest.json", Body=json.dumps(manifest).encode())
    out = run_cli("backfill", "--inventory", f"s3://{dest}/m/manifest.json",
                  env=worker_env(db_url, redis_url, moto_endpoint))  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.lower().startswith(
        f"sightline: error: inventory file data/bad is not readable {fmt.lower()}"
    )
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    with db, db.cursor() as cur:
        cur.execute("SELECT state, error FROM jobs")
        ((state, error),) = cur.fetchall()
    assert state == "failed" and "data/bad" in error


@pytest.mark.slow
def test_a_job_has_one_publisher(inventory, db, db_url, redis_url, moto_endpoint) -> None:
    """While a backfill publishes a job (its session lock held), a second backfill of the same
    job is refused in one line and publishes nothing; once the first is gone, it resumes."""
    _, manifests, _ = inventory
    env = worker_env(db_url, redis_url, moto_endpoint)
    with db, db.cursor() as cur:
        params = {"source": None, "selection": "missing", "inventory": manifests["CSV"]}
        job_id = jobs.create(cur, "backfill", params)
    holder = connect(db_url)  # stands for the first backfill's connection
    with holder, holder.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (jobs.PUBLISHER_LOCK, job_id))
        assert cur.fetchone()[0]
    out = run_cli("backfill", "--inventory", manifests["CSV"], "--resume", str(job_id), env=env)
    assert out.returncode == 2
    assert out.stderr == (
        f"sightline: error: job {job_id} is being published by another backfill; let it "
        f"finish, or stop it with `sightline jobs pause|cancel {job_id}`\n"
    )
    assert _queued(redis_url) == []
    holder.close()  # the first backfill ends (or is killed): its lock goes with it
    out = run_cli("backfill", "--inventory", manifests["CSV"], "--resume", str(job_id), env=env)
    assert out.returncode == 0, out.stderr
    assert len(_queued(redis_url)) == 3


@pytest.mark.slow
def test_rows_repeated_across_pages_and_files_are_published_once(
    moto_endpoint, db, db_url, redis_url
) -> None:
    """An inventory repeating keys (in a page, across pages and across data files) publishes
    each key once, so the job's published count is what the workers will count (a repeat
    left it running for good)."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    dest = f"inv-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=dest)
    row = lambda k: ["src", f"users/a/{k}.jpg", "", "true", "false", "10", WHEN, f"e{k}"]  # noqa: E731
    files = {"d/1.csv": _csv([row(1), row(1), row(2), row(3)]),
             "d/2.csv.gz": gzip.compress(_csv([row(3), row(4), row(2)]))}  # fmt: skip
    for key, body in files.items():
        s3.put_object(Bucket=dest, Key=key, Body=body)
    manifest = {"sourceBucket": "src", "destinationBucket": f"arn:aws:s3:::{dest}",
                "fileFormat": "CSV", "fileSchema": SCHEMA,
                "files": [{"key": k, "size": len(b), "MD5checksum": "x"}
                          for k, b in files.items()]}  # fmt: skip
    s3.put_object(Bucket=dest, Key="m/manifest.json", Body=json.dumps(manifest).encode())
    out = run_cli("backfill", "--inventory", f"s3://{dest}/m/manifest.json", "--json",
                  "--page-size", "2", env=worker_env(db_url, redis_url, moto_endpoint))  # fmt: skip
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert (job["listed"], job["published"]) == (7, 4)
    assert sorted(t["key"] for t in _queued(redis_url)) == [
        f"users/a/{k}.jpg" for k in (1, 2, 3, 4)
    ]


def test_a_bad_inventory_row_is_that_row_alone(moto_endpoint, caplog) -> None:
    """A bad size or time in an inventory row is no size or time (both informational); a key
    S3 cannot hold is skipped with a warning. Each had stopped the backfill with a raw
    EventError (exit 1), leaving its job running, and a resume met the same row again."""
    from handlers.rules import Exclusions, OwnerRule
    from sightline.backfill.select import to_tasks

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    dest = f"inv-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=dest)
    row = lambda k, size="10", when=WHEN: ["src", f"users/a/{k}.jpg", "", "true", "false",  # noqa: E731
                                           size, when, f"e{k}"]  # fmt: skip
    data = _csv([row(1, size="\u00b2"), row(2, size="9" * 28), row(3, when="yesterday"),
                 row("x" * 1100), row(5, when="9999-12-31T23:59:59-15:00"),
                 row("%FF%FE")])  # fmt: skip
    s3.put_object(Bucket=dest, Key="d/1.csv", Body=data)
    parquet = _parquet([{"key": "users/c/6.jpg", "size": 10, "last_modified_date": 1714557600}])
    s3.put_object(Bucket=dest, Key="d/2.parquet", Body=parquet)
    manifest = {"sourceBucket": "src", "destinationBucket": dest, "fileFormat": "CSV",
                "fileSchema": SCHEMA.split(", "), "files": [{"key": "d/1.csv"}]}  # fmt: skip
    objects = [o for p in inventory_pages(s3, Manifest.parse(json.dumps(manifest)), None)
               for o in p.objects]  # fmt: skip
    with caplog.at_level("WARNING", logger="sightline.backfill"):
        tasks = to_tasks(objects, OwnerRule(), Exclusions.parse(None), job_id=1)
    assert [(t["key"], t["size"], t["event_time"]) for t in tasks] == [
        ("users/a/1.jpg", None, WHEN),
        ("users/a/2.jpg", None, WHEN),
        ("users/a/3.jpg", 10, None),
        ("users/a/5.jpg", 10, None),
    ]
    assert "longer than S3's 1024 bytes" in caplog.text
    assert "key 'users/a/%FF%FE.jpg' is not UTF-8 once decoded" in caplog.text
    manifest = {**manifest, "fileFormat": "Parquet", "files": [{"key": "d/2.parquet"}]}
    [obj] = [o for p in inventory_pages(s3, Manifest.parse(json.dumps(manifest)), None)
             for o in p.objects]  # fmt: skip
    assert (obj.key, obj.last_modified) == ("users/c/6.jpg", None)
    s3.put_object(Bucket=dest, Key="d/3.parquet", Body=_parquet([{"object_key": "users/c/7.jpg"}]))
    manifest = {**manifest, "files": [{"key": "d/3.parquet"}]}
    with pytest.raises(SourceError, match=r"d/3\.parquet .*no key column"):
        list(inventory_pages(s3, Manifest.parse(json.dumps(manifest)), None))
    with pytest.raises(SourceError, match="JSON nested too deep"):
        Manifest.parse("[" * 100_000 + "]" * 100_000)
