"""argparse types for the CLI's numbers: a bad value is refused by argparse in one line
(exit 2) before a command starts, instead of failing inside it (a ZeroDivisionError, a
negative array size, a NaN that never ends a timing loop)."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


MAX_PROCESSES = 64  # processes a command may start: more than any machine here has cores


def _whole(text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from {low} to {high}, got {text!r}"
        )
    return value


def loader_workers(text: str) -> int:
    """Data-loading processes: 0 (load in this process) to MAX_PROCESSES (100,000 forked
    until the machine ran out of memory)."""
    return _whole(text, 0, MAX_PROCESSES)


def process_count(text: str) -> int:
    """Processes to start: 1 to MAX_PROCESSES."""
    return _whole(text, 1, MAX_PROCESSES)


def _number(text: str, low: float, high: float, low_open: bool, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    above = value > low if low_open else value >= low
    if not (math.isfinite(value) and above and value <= high):  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def positive_number(text: str) -> float:
    """Finite, above 0 (a learning rate)."""
    return _number(text, 0.0, math.inf, True, "a finite number above 0")


def non_negative_number(text: str) -> float:
    """Finite, 0 or more (a weight decay, a loss weight)."""
    return _number(text, 0.0, math.inf, False, "a finite number of 0 or more")


def positive_seconds(text: str) -> float:
    """Seconds: finite, above 0."""
    return positive_number(text)


def millis(text: str) -> float:
    """Milliseconds: 0 up to a day (infinity overflowed the worker's visibility timeout)."""
    return _number(text, 0.0, 86_400_000.0, False, "a number of ms from 0 to 86400000")


def share(text: str) -> float:
    """A share from 0 to 1."""
    return _number(text, 0.0, 1.0, False, "from 0 to 1")
