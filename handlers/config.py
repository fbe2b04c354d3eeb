"""The handler's settings, read from the environment once at an entry point (Lambda module
load, webhook start) and passed down as arguments; and the optional settings file both the
handler and the worker read first (``load_toml``/``apply_file``), with the URL checks they share.

A setting's value comes from, in order: the environment, then ``sightline.toml``, then the
default. The file is looked up at ``$SIGHTLINE_CONFIG`` (which must exist), else
``./sightline.toml``, else ``$XDG_CONFIG_HOME/sightline/sightline.toml`` (by default
``~/.config/sightline/sightline.toml``); ``SIGHTLINE_CONFIG=none`` reads none. Its keys are
the environment variables' names, in either case (``database_url = "postgresql://..."``);
a table becomes JSON (``SIGHTLINE_BROKER_OPTIONS``).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from handlers.contract import parse_broker_options
from handlers.rules import OPAQUE_KEYS_DEFAULT, Exclusions, OwnerRule

# Kombu transports a sightline process may be pointed at (memory: tests only).
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "sqs", "memory")
DATABASE_SCHEMES = ("postgresql", "postgres")

# What a settings file may set: ours, the two URLs, and boto3's.
_SETTING = re.compile(r"^(SIGHTLINE_\w+|DATABASE_URL|CELERY_BROKER_URL|AWS_\w+)$")
# Names whose values are secrets whatever they hold.
_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|SESSION", re.IGNORECASE)

# The handler's settings and their defaults (None: unset), for `sightline config show`.
HANDLER_DEFAULTS: dict[str, str | None] = {
    "CELERY_BROKER_URL": None,
    "SIGHTLINE_BROKER_OPTIONS": None,
    "SIGHTLINE_OWNER_PATTERN": "users/{owner}/",
    "SIGHTLINE_DEFAULT_OWNER": None,
    "SIGHTLINE_WEBHOOK_TOKEN": None,
    "SIGHTLINE_ALLOWED_BUCKETS": None,
    "SIGHTLINE_OPAQUE_KEYS": "tag",
    "SIGHTLINE_EXCLUDE": None,
    # Read by handlers/asgi.py and the log set-up; shown by `config show` all the same.
    "SIGHTLINE_WEBHOOK_BODY_TIMEOUT_S": "10",
    "SIGHTLINE_WEBHOOK_PUBLISH_THREADS": "8",
    "SIGHTLINE_LOG_LEVEL": "INFO",
}


class SettingsError(ValueError):
    """A setting or settings file that cannot be used, with the reason in one line."""


def config_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The settings file in force, or None; raises SettingsError when $SIGHTLINE_CONFIG
    names a file that does not exist."""
    env = os.environ if env is None else env
    named = env.get("SIGHTLINE_CONFIG")
    if named and named.strip().lower() == "none":
        return None  # no file, whatever lies around (tests, a one-off run)
    if named:
        if not Path(named).is_file():
            raise SettingsError(f"SIGHTLINE_CONFIG={named}: no such file")
        return Path(named)
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path("sightline.toml"), Path(base) / "sightline" / "sightline.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_toml(path: Path) -> dict[str, str]:
    """The file's settings as environment-style strings (upper-case names; tables as JSON,
    booleans as 1/0). Raises SettingsError for a file that is not TOML or a key that is not
    a setting's name (``batch_size`` for SIGHTLINE_BATCH_SIZE would otherwise be ignored)."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"settings file {path}: {exc}") from None
    except UnicodeDecodeError:  # TOML is UTF-8
        raise SettingsError(f"settings file {path}: not UTF-8 text") from None
    out = {}
    for key, value in data.items():
        name = key.upper()
        if not _SETTING.match(name):
            raise SettingsError(
                f"settings file {path}: unknown setting {key!r} (keys are environment "
                "variable names: SIGHTLINE_*, DATABASE_URL, CELERY_BROKER_URL, AWS_*)"
            )
        if isinstance(value, bool):
            out[name] = "1" if value else "0"
        elif isinstance(value, dict | list):
            out[name] = json.dumps(value)
        else:
            out[name] = str(value)
    return out


# Names set from the file by apply_file (so `config show` can say where a value came from).
FROM_FILE: dict[str, str] = {}


def apply_file(env: MutableMapping[str, str] | None = None) -> Path | None:
    """Fill unset environment variables from the settings file; returns its path or None.

    Called once at a process entry point, before any settings are read: the environment
    then holds the effective settings, for this process and the clients it uses (boto3).
    """
    env = os.environ if env is None else env
    path = config_path(env)
    if path is None:
        return None
    for name, value in load_toml(path).items():
        if name not in env or env[name] == "":
            env[name] = value
            FROM_FILE[name] = str(path)
    return path


def source(name: str, env: Mapping[str, str] | None = None) -> str:
    """Where a setting's value came from: 'env', 'file' or 'default'."""
    env = os.environ if env is None else env
    if name in FROM_FILE and env.get(name) is not None:
        return "file"
    return "env" if env.get(name) else "default"


def mask(name: str, value: str | None) -> str | None:
    """A value fit to print: URL passwords and secret-named values replaced by ***."""
    if value is None:
        return None
    if _SECRET.search(name):
        return "***"
    if "://" in value:
        parts = urlsplit(value)
        if parts.password:
            host = parts.netloc.rsplit("@", 1)[1]
            netloc = f"{parts.username or ''}:***@{host}"
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def check_url(name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    """``value`` unchanged when it is a URL of one of ``schemes``; else SettingsError."""
    if not value:
        return None
    scheme = value.split("://", 1)[0].split("+", 1)[0].lower() if "://" in value else ""
    if not scheme:
        raise SettingsError(
            f"{name}={mask(name, value)} is not a URL: give a scheme, e.g. {schemes[0]}://..."
        )
    if scheme not in schemes:
        raise SettingsError(f"{name}: unknown scheme {scheme!r} (one of {', '.join(schemes)})")
    return value


def check_broker_url(value: str | None) -> str | None:
    return check_url("CELERY_BROKER_URL", value, BROKER_SCHEMES)


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
    exclude: Exclusions = field(default_factory=Exclusions)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandlerConfig:
        """The handler's settings; raises SettingsError, in one line, for a bad value."""
        env = os.environ if env is None else env
        try:
            return cls._from_env(env)
        except SettingsError:
            raise
        except ValueError as exc:  # a parser's own error: the same one line, exit 2
            raise SettingsError(str(exc)) from None

    @classmethod
    def _from_env(cls, env: Mapping[str, str]) -> HandlerConfig:
        log_level(env)  # refused here too, so `config show` and every entry point say so
        return cls(
            broker_url=check_broker_url(env.get("CELERY_BROKER_URL") or None),
            broker_options=parse_broker_options(env.get("SIGHTLINE_BROKER_OPTIONS")),
            owners=OwnerRule(
                env.get("SIGHTLINE_OWNER_PATTERN") or "users/{owner}/",
                env.get("SIGHTLINE_DEFAULT_OWNER") or None,
            ),
            webhook_token=env.get("SIGHTLINE_WEBHOOK_TOKEN") or None,
            allowed_buckets=parse_buckets(env.get("SIGHTLINE_ALLOWED_BUCKETS")),
            opaque_keys=parse_opaque_keys(env.get("SIGHTLINE_OPAQUE_KEYS")),
            exclude=Exclusions.parse(env.get("SIGHTLINE_EXCLUDE")),
        )


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(env: Mapping[str, str] | None = None) -> str:
    """SIGHTLINE_LOG_LEVEL, upper-cased (``debug`` reads as DEBUG; logging takes only the
    upper-case names, and an unknown one failed the Lambda's init); SettingsError else."""
    env = os.environ if env is None else env
    raw = env.get("SIGHTLINE_LOG_LEVEL") or "INFO"
    level = raw.strip().upper()
    if level not in _LEVELS:
        raise SettingsError(f"SIGHTLINE_LOG_LEVEL must be one of {', '.join(_LEVELS)}, got {raw!r}")
    return level


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
