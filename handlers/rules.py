"""What the handler does with an object event: images only, owners from the key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from handlers.events import ObjectEvent

# GIF is tagged by its first frame (what Pillow decodes on open); the README says so.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".gif", ".heic", ".heif", ".avif", ".webp", ".tif", ".tiff"}
)
# SIGHTLINE_OPAQUE_KEYS: keys with no extension (photo services that store objects under ids,
# e.g. users/42/8f3a9c...) are tagged and the worker sniffs the bytes; a non-image ends
# "ignored" with its reason. On by default: otherwise such a service gets nothing tagged.
OPAQUE_KEYS_DEFAULT = True
NUL_KEY = "key contains NUL, which the photo database cannot store"
# Content types that say nothing about the bytes (SDKs default to them): the extension decides.
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


def declares_image(content_type: str | None) -> bool:
    """A Content-Type an image may come under: none, ``image/*`` or a generic octet-stream."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    return not ctype or ctype in _GENERIC_TYPES or ctype.startswith("image/")


@dataclass(frozen=True)
class OwnerRule:
    """Owner from a key pattern like ``users/{owner}/``; keys outside it get the default."""

    pattern: str = "users/{owner}/"
    default_owner: str | None = None
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pattern.count("{owner}") != 1:
            raise ValueError("SIGHTLINE_OWNER_PATTERN must contain {owner} exactly once")
        head, tail = self.pattern.split("{owner}")
        regex = re.compile("^" + re.escape(head) + r"(?P<owner>[^/]+)" + re.escape(tail))
        object.__setattr__(self, "_regex", regex)

    def owner_of(self, key: str) -> str | None:
        m = self._regex.match(key)
        return m.group("owner") if m else self.default_owner


@dataclass(frozen=True)
class Exclusions:
    """SIGHTLINE_EXCLUDE: comma-separated key prefixes or globs (``*/.thumbnails/*``,
    ``*/@eaDir/*``) that uploads and backfills alike never tag.

    A pattern with ``*``, ``?`` or ``[`` is a glob over the whole key (``*`` crosses ``/``)
    and also matches at the top of the bucket (``*/@eaDir/*`` excludes ``@eaDir/x.jpg``);
    any other pattern is a prefix.
    """

    patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: str | None) -> Exclusions:
        return cls(tuple(p.strip() for p in (raw or "").split(",") if p.strip()))

    def match(self, key: str) -> str | None:
        """The first pattern that excludes ``key``, or None."""
        for p in self.patterns:
            if any(c in p for c in "*?["):
                if fnmatchcase(key, p) or fnmatchcase("/" + key, p):
                    return p
            elif key.startswith(p):
                return p
        return None


NO_EXCLUSIONS = Exclusions()


def skip_reason(
    event: ObjectEvent,
    exclude: Exclusions = NO_EXCLUSIONS,
    *,
    opaque_keys: bool = OPAQUE_KEYS_DEFAULT,
) -> str | None:
    """Why an event is ignored, or None when it is work.

    Keys that ``exclude`` matches are ignored with the pattern. With ``opaque_keys``, a key
    with no extension is work (the worker sniffs its bytes); a key with any other non-image
    extension is skipped here, costing nothing further. An image key written empty or under
    a non-image Content-Type is work too: it replaces the photo that key held, whose tags
    must go (the worker records it "ignored").
    """
    if event.kind == "other":
        return f"event type not handled ({event.event_name})"
    if "\x00" in event.key:  # S3 allows it; Postgres text cannot hold it: refuse it here
        return NUL_KEY
    if event.key.endswith("/"):
        return "folder marker"
    if event.created and (pattern := exclude.match(event.key)):
        return f"excluded by SIGHTLINE_EXCLUDE ({pattern})"
    name = event.key[event.key.rfind("/") + 1 :]
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > 0 else ""  # ".profile" is a name, not an extension
    if ext not in IMAGE_EXTENSIONS and not (ext == "" and opaque_keys):
        return f"not an image extension ({ext or 'none'})"
    return None
