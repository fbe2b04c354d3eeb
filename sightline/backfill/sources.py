"""Where a backfill's objects come from: a bucket listing (ListObjectsV2, paginated) or an S3
Inventory report. Each page carries the position a killed backfill resumes from."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from handlers.contract import event_time_problem
from handlers.events import EventError, byte_count

log = logging.getLogger("sightline.backfill")


class SourceError(ValueError):
    """A source that cannot be read (bad URI, manifest, data file), in one line."""


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One object as a listing or inventory row names it (key decoded, ETag unquoted)."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int | None
    last_modified: str | None  # ISO 8601


@dataclass(frozen=True)
class Page:
    objects: list[ListedObject]
    position: dict[str, Any]  # where the next page starts: the checkpoint after this one


def parse_source(uri: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` -> (bucket, prefix); raises SourceError."""
    if not uri.startswith("s3://"):
        raise SourceError(f"source must be s3://BUCKET[/PREFIX], got {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise SourceError(f"source has no bucket: {uri!r}")
    return bucket, prefix


def _etag(raw: Any) -> str | None:
    # ListObjectsV2 quotes ETags; S3 events and the photos table do not.
    text = str(raw or "").strip().strip('"')
    return text or None


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if value else None


def list_pages(
    s3: Any, bucket: str, prefix: str, position: dict[str, Any] | None, page_size: int = 1000
) -> Iterator[Page]:
    """ListObjectsV2 pages from ``position`` on.

    A resumed listing starts after the last key of the last finished page (``StartAfter``):
    a continuation token is kept in the checkpoint for the record, but servers need not honour
    one issued to another process, while every S3 (AWS, MinIO, moto) honours StartAfter.
    """
    start_after = (position or {}).get("start_after")
    token: str | None = None
    while True:
        args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if token:
            args["ContinuationToken"] = token
        elif start_after:
            args["StartAfter"] = start_after
        answer = s3.list_objects_v2(**args)
        contents = answer.get("Contents") or []
        objects = [
            ListedObject(
                bucket=bucket,
                key=o["Key"],
                version_id=None,  # ListObjectsV2 lists the current versions only
                etag=_etag(o.get("ETag")),
                size=int(o["Size"]) if o.get("Size") is not None else None,
                last_modified=_iso(o.get("LastModified")),
            )
            for o in contents
        ]
        token = answer.get("NextContinuationToken") if answer.get("IsTruncated") else None
        if objects:
            start_after = objects[-1].key
        yield Page(objects, {"start_after": start_after, "token": token})
        if not token:
            return


# ---------------------------------------------------------------------------- S3 Inventory
@dataclass(frozen=True)
class Manifest:
    """An S3 Inventory ``manifest.json``: where the data files are and what their rows hold."""

    source_bucket: str
    destination_bucket: str
    file_format: str  # CSV | Parquet
    schema: list[str]  # CSV column names (Parquet files carry their own)
    files: list[str]  # data file keys in the destination bucket

    @classmethod
    def parse(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
            fmt = str(data["fileFormat"])
            dest = str(data["destinationBucket"]).rsplit(":", 1)[-1]  # arn:aws:s3:::name
            files = [str(f["key"]) for f in data["files"]]
            schema = data.get("fileSchema") or ""
            if not isinstance(schema, list):  # S3 writes "Bucket, Key, ..."; a list reads too
                schema = str(schema).split(",")
            schema = [str(c).strip() for c in schema if str(c).strip()]
            source = str(data["sourceBucket"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"not an S3 Inventory manifest.json: {exc}") from None
        except RecursionError:
            raise SourceError("not an S3 Inventory manifest.json: JSON nested too deep") from None
        if fmt.upper() not in {"CSV", "PARQUET"}:
            raise SourceError(f"inventory format {fmt} is not supported (CSV or Parquet)")
        if fmt.upper() == "CSV" and "Key" not in schema:
            raise SourceError("inventory manifest's fileSchema has no Key column")
        return cls(source, dest, fmt.upper(), schema, files)


def read_manifest(s3: Any, where: str) -> Manifest:
    """A manifest from ``s3://bucket/key`` or a local file; raises SourceError."""
    try:
        if where.startswith("s3://"):
            bucket, key = parse_source(where)
            text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        else:
            text = Path(where).read_text("utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SourceError(f"{where} is not UTF-8 JSON") from None
    try:
        return Manifest.parse(text)
    except SourceError as exc:  # which file it was: --inventory may name several in a run
        raise SourceError(f"{where}: {exc}") from None


def _csv_rows(data: bytes, schema: list[str]) -> Iterator[dict[str, str]]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    for row in csv.reader(io.StringIO(data.decode("utf-8"))):
        if row:
            yield dict(zip(schema, row))


def _parquet_rows(data: bytes) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq  # deferred: only Parquet inventories need it
    except ImportError:  # pragma: no cover - pyarrow is a dependency of the worker extra
        raise SourceError("Parquet inventories need pyarrow (pip install pyarrow)") from None
    table = pq.read_table(io.BytesIO(data))
    # Parquet column names are lower-case (bucket, key, version_id, ...): map to CSV's names.
    names = {
        "bucket": "Bucket",
        "key": "Key",
        "version_id": "VersionId",
        "is_latest": "IsLatest",
        "is_delete_marker": "IsDeleteMarker",
        "size": "Size",
        "last_modified_date": "LastModifiedDate",
        "e_tag": "ETag",
    }
    cols = {names.get(c, c): table.column(c).to_pylist() for c in table.column_names}
    if "Key" not in cols:
        raise ValueError(f"no key column (columns: {', '.join(table.column_names)})")
    for i in range(table.num_rows):
        yield {name: values[i] for name, values in cols.items()}


def _inventory_object(row: dict[str, Any], encoded: bool, bucket: str) -> ListedObject | None:
    """A current, non-deleted object of an inventory row; None for other rows."""
    if str(row.get("IsLatest", "true")).lower() == "false":
        return None
    if str(row.get("IsDeleteMarker", "false")).lower() == "true":
        return None
    key = str(row.get("Key") or "")
    if encoded:  # CSV inventories URL-encode keys (a space as '+')
        try:
            key = unquote_plus(key, errors="strict")
        except UnicodeDecodeError:  # "%FF%FE" became "��", a key no object has
            log.warning("skipped an inventory row of s3://%s: key %r is not UTF-8 once decoded",
                        bucket, key[:200])  # fmt: skip
            return None
    if not key:
        return None
    # Size and time are informational (the worker reads the object): a bad one is none,
    # not a task the handler's rules refuse
    try:  # the handler's rule (str.isdigit() took "²", which int() refuses)
        size = byte_count(str(row.get("Size") or "").strip() or None)
    except EventError:
        size = None
    when = _iso(row.get("LastModifiedDate"))
    return ListedObject(
        bucket=str(row.get("Bucket") or bucket),
        key=key,
        version_id=str(row["VersionId"]) if row.get("VersionId") else None,
        etag=_etag(row.get("ETag")),
        size=size,
        last_modified=when if when and event_time_problem(when) is None else None,
    )


def inventory_pages(
    s3: Any, manifest: Manifest, position: dict[str, Any] | None, page_size: int = 1000
) -> Iterator[Page]:
    """Pages of an inventory's rows from ``position`` ({"file": index, "row": next row})."""
    first_file = int((position or {}).get("file", 0))
    first_row = int((position or {}).get("row", 0))
    for f in range(first_file, len(manifest.files)):
        key = manifest.files[f]
        try:
            data = s3.get_object(Bucket=manifest.destination_bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise SourceError(f"cannot read inventory file {key}: {exc}") from exc
        if manifest.file_format == "CSV":
            rows: Iterator[dict[str, Any]] = _csv_rows(data, manifest.schema)
        else:
            rows = _parquet_rows(data)
        skip = first_row if f == first_file else 0
        batch: list[ListedObject] = []
        n = 0
        try:
            for n, row in enumerate(rows, start=1):
                if n <= skip:
                    continue
                obj = _inventory_object(row, manifest.file_format == "CSV", manifest.source_bucket)
                if obj is not None:
                    batch.append(obj)
                if (n - skip) % page_size == 0:
                    yield Page(batch, {"file": f, "row": n})
                    batch = []
        except (ValueError, OSError, EOFError, csv.Error, zlib.error) as exc:
            # a corrupt data file (bad gzip: a bad header is OSError, a bad body zlib.error;
            # not UTF-8; not Parquet: pyarrow's errors are ValueError/OSError) fails the job
            # with its name, not with a traceback
            raise SourceError(
                f"inventory file {key} is not readable {manifest.file_format} "
                f"(after row {n}): {exc}"
            ) from None
        yield Page(batch, {"file": f + 1, "row": 0})  # possibly empty: it moves to the next file
