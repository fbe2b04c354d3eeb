"""The handler's settings, read from the environment once at an entry point (Lambda module
load, webhook start) and passed down as arguments."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.contract import parse_broker_options
from handlers.rules import OPAQUE_KEYS_DEFAULT, OwnerRule


@dataclass(frozen=True)
class HandlerConfig:
    broker_url: str | None
    broker_options: dict[str, Any] = field(default_factory=dict)
    owners: OwnerRule = field(default_factory=OwnerRule)
    webhook_token: str | None = None
    # None: every bucket; else events for other buckets are ignored with a reason.
    allowed_buckets: frozenset[str] | None = None
    # SIGHTLINE_OPAQUE_KEYS ("tag" | "ignore"): keys with no extension tagged or skipped.
    opaque_keys: bool = OPAQUE_KEYS_DEFAULT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandlerConfig:
        env = os.environ if env is None else env
        return cls(
            broker_url=env.get("CELERY_BROKER_URL") or None,
            broker_options=parse_broker_options(env.get("SIGHTLINE_BROKER_OPTIONS")),
            owners=OwnerRule(
                env.get("SIGHTLINE_OWNER_PATTERN") or "users/{owner}/",
                env.get("SIGHTLINE_DEFAULT_OWNER") or None,
            ),
            webhook_token=env.get("SIGHTLINE_WEBHOOK_TOKEN") or None,
            allowed_buckets=parse_buckets(env.get("SIGHTLINE_ALLOWED_BUCKETS")),
            opaque_keys=parse_opaque_keys(env.get("SIGHTLINE_OPAQUE_KEYS")),
        )


def parse_opaque_keys(raw: str | None) -> bool:
    """SIGHTLINE_OPAQUE_KEYS: "tag" (the default) or "ignore"; ValueError for anything else."""
    value = (raw or "").strip().lower()
    if not value:
        return OPAQUE_KEYS_DEFAULT
    if value not in {"tag", "ignore"}:
        raise ValueError(f"SIGHTLINE_OPAQUE_KEYS must be 'tag' or 'ignore', got {raw!r}")
    return value == "tag"


def parse_buckets(raw: str | None) -> frozenset[str] | None:
    """SIGHTLINE_ALLOWED_BUCKETS: comma-separated bucket names; unset or blank allows all."""
    names = frozenset(b.strip() for b in (raw or "").split(",") if b.strip())
    return names or None
