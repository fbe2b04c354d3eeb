"""No secret is committed: tracked files hold no private key and no AWS credential."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_DASHES = "-" * 5  # spelled out so this file does not match its own pattern
PATTERNS = {
    "private key": re.compile(_DASHES + r"BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?" + _DASHES),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b"),
    "AWS secret access key": re.compile(
        r"(?i)aws.{0,20}secret.{0,20}['\"=:\s]([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
    ),
    "token in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^/\s@'\"{}$]{12,}@"),
}


def tracked_files() -> list[Path]:
    """Files git tracks here; every file under the root when this is not a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        return [ROOT / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]


def findings(text: str) -> list[str]:
    """The kinds of secret that appear in ``text``."""
    return [kind for kind, pattern in PATTERNS.items() if pattern.search(text)]


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        (_DASHES + "BEGIN RSA PRIVATE KEY" + _DASHES + "\nMIIE", "private key"),
        (_DASHES + "BEGIN OPENSSH PRIVATE KEY" + _DASHES, "private key"),
        (_DASHES + "BEGIN PRIVATE KEY" + _DASHES, "private key"),
        ("key = AKIA" + "Z7Q2" * 4, "AWS access key id"),
        (
            "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG+bPxRfiCY" + "Q" * 10,
            "AWS secret access key",
        ),
        ('"AWS_SECRET_ACCESS_KEY": "' + "a1B2" * 10 + '"', "AWS secret access key"),
        ("amqp://svc:" + "Zx9" * 6 + "@mq.internal:5672//", "token in a URL"),
    ],
)
def test_the_scanner_finds_planted_secrets(sample: str, kind: str) -> None:
    """Each pattern catches the secret shape it names (so a clean scan means something)."""
    assert kind in findings(sample)


@pytest.mark.parametrize(
    "sample",
    [
        "AWS_SECRET_ACCESS_KEY=testing",
        "amqp://guest:guest@127.0.0.1:5672//",
        "postgresql://postgres:@/postgres?host=/tmp",
        "SIGHTLINE_WEBHOOK_TOKEN=... CELERY_BROKER_URL=...",
    ],
)
def test_the_scanner_passes_test_credentials(sample: str) -> None:
    """Well-known local test credentials are not secrets."""
    assert findings(sample) == []


@pytest.mark.slow
def test_no_tracked_file_holds_a_secret() -> None:
    """git's tracked files contain no private key, AWS key pair or credentialed URL."""
    files = tracked_files()
    assert len(files) > 20
    found = []
    for path in files:
        try:
            text = path.read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary (photos, weights): not where a key is pasted
        found += [f"{path.relative_to(ROOT)}: {kind}" for kind in findings(text)]
    assert found == []
