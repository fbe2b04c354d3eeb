"""The shared local stack's wait: rows reached, a worker gone, time out."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sightline.stack import StackError, wait_for_rows


def test_wait_returns_once_the_rows_are_there_and_the_stack_settled() -> None:
    """It polls until the count reaches the target and ``settled`` holds, and reports the
    count it last saw; progress hears every count short of the target."""
    counts = iter([0, 2, 5, 5, 6])
    drained = iter([False, True])
    seen: list[int] = []
    done = wait_for_rows(lambda: next(counts), 5, timeout_s=5, interval_s=0.01,
                         settled=lambda: next(drained), progress=seen.append)  # fmt: skip
    assert done == 5 and seen == [0, 2, 5]


def test_wait_gives_up_after_its_time_with_what_was_done() -> None:
    with pytest.raises(StackError, match=r"only 1/3 done after 0 s"):
        wait_for_rows(lambda: 1, 3, timeout_s=0.05, interval_s=0.01)


@pytest.mark.slow
def test_wait_stops_when_a_worker_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(10)
    with pytest.raises(StackError, match=r"a worker exited \(3\) with 0/2 done"):
        wait_for_rows(lambda: 0, 2, timeout_s=30, workers=[proc], interval_s=0.01)
