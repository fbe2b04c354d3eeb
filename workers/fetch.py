"""Fetch object bytes with boto3: timeouts, a size cap, the event's version id."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from workers.errors import ObjectGone, TransientError, request_refusal
from workers.photos import PhotoError

_GONE = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}


class Fetched(bytes):
    """An object's bytes, with the Content-Type S3 returned for it (None when absent)."""

    content_type: str | None = None


def s3_client(endpoint_url: str | None, timeout_s: float = 30.0) -> Any:
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def fetch(client: Any, bucket: str, key: str, version_id: str | None, max_bytes: int) -> bytes:
    """The object's bytes; ObjectGone when deleted, PhotoError when too big or when the
    client refuses the request (a bucket name S3 cannot have), TransientError for faults a
    retry may cure."""
    args = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        args["VersionId"] = version_id
    try:
        obj = client.get_object(**args)
        length = int(obj.get("ContentLength") or 0)
        if length > max_bytes:
            obj["Body"].close()
            raise PhotoError(f"object too large: {length} bytes exceeds {max_bytes}")
        data = obj["Body"].read(max_bytes + 1)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _GONE:
            raise ObjectGone(f"object gone: s3://{bucket}/{key}") from exc
        if code in _TRANSIENT or status >= 500:
            raise TransientError(f"S3 {code or status}: {exc}") from exc
        if status == 429:
            raise TransientError(f"S3 throttled: {exc}") from exc
        raise
    except (BotoConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise TransientError(f"S3 unreachable: {exc}") from exc
    except ParamValidationError as exc:
        # refused before it was sent (a BotoCoreError too): retrying cannot make it valid
        raise PhotoError(f"invalid S3 request: {request_refusal(exc)}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"S3 client error: {exc}") from exc
    if len(data) > max_bytes:
        raise PhotoError(f"object too large: more than {max_bytes} bytes")
    fetched = Fetched(data)
    fetched.content_type = obj.get("ContentType") or None
    return fetched
