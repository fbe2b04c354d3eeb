"""What the handler does with an object event: images only, owners from the key."""

from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.events import ObjectEvent

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class OwnerRule:
    """Owner from a key pattern like ``users/{owner}/``; keys outside it get the default."""

    pattern: str = "users/{owner}/"
    default_owner: str | None = None

    def __post_init__(self) -> None:
        if self.pattern.count("{owner}") != 1:
            raise ValueError("SIGHTLINE_OWNER_PATTERN must contain {owner} exactly once")
        head, tail = self.pattern.split("{owner}")
        object.__setattr__(
            self,
            "_regex",
            re.compile("^" + re.escape(head) + r"(?P<owner>[^/]+)" + re.escape(tail)),
        )

    def owner_of(self, key: str) -> str | None:
        m = self._regex.match(key)  # type: ignore[attr-defined]
        return m.group("owner") if m else self.default_owner


def skip_reason(event: ObjectEvent) -> str | None:
    """Why an event is ignored, or None when it is work. Deletes skip only non-images."""
    if event.key.endswith("/"):
        return "folder marker"
    dot = event.key.rfind(".")
    ext = event.key[dot:].lower() if dot > event.key.rfind("/") else ""
    if ext not in IMAGE_EXTENSIONS:
        return f"not an image extension ({ext or 'none'})"
    if event.content_type and not event.content_type.lower().startswith("image/"):
        return f"not an image content type ({event.content_type})"
    if event.created and event.size == 0:
        return "empty object"
    return None
