"""What Postgres text can hold: no NUL, valid UTF-8, a bounded length.

Texts from EXIF, XMP and error messages are cleaned (stored); identity texts (bucket, key,
version, owner) are never altered, only checked, because a changed key names another object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from handlers.contract import event_time_problem
from handlers.events import MAX_KEY_BYTES, MAX_OBJECT_SIZE

ERROR_MAX = 1000  # characters kept of an error or warning message
# C0 controls but tab, newline and carriage return, DEL, C1 controls: never in a camera name.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_IDENTITY_TEXT = ("bucket", "key", "version_id", "etag", "owner", "sequencer")


def clean_text(value: Any, limit: int) -> str | None:
    """``value`` as text Postgres can store: control characters dropped, lone surrogates
    replaced, blanks trimmed, at most ``limit`` characters; None for nothing left."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    text = _CONTROLS.sub("", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text or None


def clean_message(value: Any) -> str | None:
    """An error or warning message, one line, bounded (ERROR_MAX)."""
    if value is None:
        return None
    one_line = " ".join(str(value).split())
    return clean_text(one_line, ERROR_MAX)


def unstorable(task: Mapping[str, Any]) -> str | None:
    """Why a task's identity cannot be stored (NUL or a lone surrogate in a text, a time or
    size Postgres cannot cast), or None when it can. Such a task is refused by itself: in
    the batch's one JSON or array parameter it would fail every photo with it."""
    for name in _IDENTITY_TEXT:
        value = task.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            return f"{name} is not text"
        if "\x00" in value:
            return f"{name} contains NUL, which Postgres text cannot hold"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{name} is not valid Unicode (a lone surrogate)"
    for name in ("bucket", "key"):
        if not task.get(name):
            return f"task has no {name}"
    if len(task["key"].encode("utf-8")) > MAX_KEY_BYTES:  # S3 answers 414, retried in vain
        return f"key is longer than S3's {MAX_KEY_BYTES} bytes"
    when = task.get("event_time")
    if when is not None:
        problem = event_time_problem(when) if isinstance(when, str) else "not text"
        if problem:
            return f"event_time {clean_text(str(when), 40)!r} is {problem}"
    size = task.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        return "size is not a whole number"
    if size is not None and not 0 <= size <= MAX_OBJECT_SIZE:  # the handler's bound (bigint)
        return f"size is not a byte count: {size}"
    return None
