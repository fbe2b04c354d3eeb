"""The handler's settings, read from the environment once at an entry point (Lambda module
load, webhook start) and passed down as arguments."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.rules import Exclusions, OwnerRule


@dataclass(frozen=True)
class HandlerConfig:
    broker_url: str | None
    broker_options: dict[str, Any] = field(default_factory=dict)
    owners: OwnerRule = field(default_factory=OwnerRule)
    webhook_token: str | None = None
    # None: every bucket; else events for other buckets are ignored with a reason.
    allowed_buckets: frozenset[str] | None = None
    exclude: Exclusions = field(default_factory=Exclusions)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandlerConfig:
        env = os.environ if env is None else env
        raw = env.get("SIGHTLINE_BROKER_OPTIONS") or "{}"
        try:
            options = json.loads(raw)
        except ValueError:
            raise ValueError(f"SIGHTLINE_BROKER_OPTIONS is not JSON: {raw!r}") from None
        if not isinstance(options, dict):
            raise ValueError("SIGHTLINE_BROKER_OPTIONS must be a JSON object")
        return cls(
            broker_url=env.get("CELERY_BROKER_URL") or None,
            broker_options=options,
            owners=OwnerRule(
                env.get("SIGHTLINE_OWNER_PATTERN") or "users/{owner}/",
                env.get("SIGHTLINE_DEFAULT_OWNER") or None,
            ),
            webhook_token=env.get("SIGHTLINE_WEBHOOK_TOKEN") or None,
            allowed_buckets=parse_buckets(env.get("SIGHTLINE_ALLOWED_BUCKETS")),
            exclude=Exclusions.parse(env.get("SIGHTLINE_EXCLUDE")),
        )


def parse_buckets(raw: str | None) -> frozenset[str] | None:
    """SIGHTLINE_ALLOWED_BUCKETS: comma-separated bucket names; unset or blank allows all."""
    names = frozenset(b.strip() for b in (raw or "").split(",") if b.strip())
    return names or None
