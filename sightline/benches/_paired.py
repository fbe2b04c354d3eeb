"""A migration's write cost, paired: the same batches written alternately into a database as
an earlier migration left it and into one at the head, on one server, in one run.

This machine's speed drifts by tens of percent between runs (docs/library.md), so two bench
runs on two versions of the code cannot tell a 10 % change from noise; batches that alternate
between the two schemas, with the Python side the same, can.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from statistics import median
from typing import Any

# Rounds not counted: the first batches fill caches and the sequences.
_WARM_ROUNDS = 2


def paired_writes(
    base_url: str,
    against: str,
    items: Callable[[int], list[dict[str, Any]]],
    batch: int,
    rounds: int,
) -> dict[str, Any]:
    """Write ``items(round)`` in batches of ``batch`` into a database migrated up to
    ``against`` and into one at the head, alternating which goes first, for ``rounds`` rounds
    (the first two uncounted).

    Returns ``against``, ``batch_size``, ``rounds`` (counted), ``rows_per_s`` for each
    (median of the rounds) and ``head_ratio``: the median over rounds of head rows/s ÷
    ``against`` rows/s (above 1: the head writes faster). Raises DatabaseError for an
    unknown ``against`` and RuntimeError if either schema refuses a bench row, or its staged
    write refuses the batch (a schema from before today's staged write: the per-photo path
    would have written it, so the figures would compare two paths, not two schemas).
    """
    from contextlib import ExitStack

    import psycopg2

    from sightline.stack import scratch_database
    from workers.db import connect
    from workers.errors import first_line
    from workers.photo_copy import EncodeError, write_photos_copy

    seconds: dict[str, list[float]] = {against: [], "head": []}
    with ExitStack() as stack:
        urls = {
            against: stack.enter_context(scratch_database(base_url, until=against)),
            "head": stack.enter_context(scratch_database(base_url)),
        }
        conns = {k: connect(u) for k, u in urls.items()}
        for c in conns.values():
            stack.callback(c.close)
        for r in range(rounds + _WARM_ROUNDS):
            chunk = items(r)
            order = [against, "head"] if r % 2 == 0 else ["head", against]
            for name in order:
                conn = conns[name]
                t0 = time.perf_counter()
                for i in range(0, len(chunk), batch):
                    try:
                        with conn, conn.cursor() as cur:
                            got = write_photos_copy(cur, chunk[i : i + batch], fallback=False)
                    except (psycopg2.Error, EncodeError) as exc:
                        raise RuntimeError(
                            f"the {name} schema's staged write refused the batch: {first_line(exc)}"
                        ) from None
                    if any(o != "tagged" for _, o in got):
                        raise RuntimeError(f"the {name} schema refused a bench row: {got}")
                if r >= _WARM_ROUNDS:
                    seconds[name].append((time.perf_counter() - t0) / len(chunk))
    ratios = [a / h for a, h in zip(seconds[against], seconds["head"], strict=True)]
    return {
        "against": against,
        "batch_size": batch,
        "rounds": rounds,
        "rows_per_s": {k: round(1 / median(v), 1) for k, v in seconds.items()},
        "head_ratio": round(median(ratios), 3),
        "head_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }
