"""`sightline jobs list|show|pause|resume|cancel`: library jobs (backfills, fleet re-tags)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="library jobs: list, show, pause, resume, cancel")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    ls = jsub.add_parser("list", help="the newest jobs first")
    ls.add_argument("--live", action="store_true", help="running and paused jobs only")
    ls.add_argument(
        "--limit", type=int, default=50, help="list at most this many jobs (default 50)"
    )
    ls.add_argument("--json", action="store_true", help="print the jobs as one JSON list")
    ls.set_defaults(func=list_cmd)
    actions = (
        ("show", "one job with its counts, rate and ETA"),
        ("pause", "publishers and workers stop taking its tasks"),
        ("resume", "a paused job runs again"),
        ("cancel", "stop it for good; its remaining tasks are skipped"),
    )
    for name, doc in actions:
        a = jsub.add_parser(name, help=doc)
        a.add_argument("id", type=int, help="the job's id (see `sightline jobs list`)")
        a.add_argument("--json", action="store_true", help="print the job as one JSON object")
        a.set_defaults(func=act, action=name)


def _cursor():
    from sightline.embedded import database_url
    from workers.db import connect
    from workers.settings import Settings

    settings = Settings.from_env()
    url, server = database_url(settings)
    conn = connect(url, timeout_s=settings.db_timeout_s, register=False)
    conn.autocommit = True
    return conn, server


def list_cmd(args: argparse.Namespace) -> int:
    from workers import jobs

    if not 1 <= args.limit <= 1_000_000:
        raise CliError(f"--limit must be 1 to 1,000,000, got {args.limit}")
    conn, _server = _cursor()
    try:
        with conn.cursor() as cur:
            found = jobs.list_jobs(cur, live_only=args.live, limit=args.limit)
    finally:
        conn.close()
    if args.json:
        print(json.dumps([j.to_json() for j in found]))
    elif not found:
        print("no jobs")
    else:
        print(f"{'id':>6}  {'kind':10} {'state':10} {'done':>10} {'failed':>8} {'skipped':>8}"
              f" {'published':>10}  eta")  # fmt: skip
        for j in found:
            print(_line(j))
    return 0


def act(args: argparse.Namespace) -> int:
    from workers import jobs

    target = {"pause": "paused", "resume": "running", "cancel": "cancelled"}.get(args.action)
    conn, _server = _cursor()
    try:
        with conn.cursor() as cur:
            job = jobs.move(cur, args.id, target) if target else jobs.get(cur, args.id)
    except jobs.JobError as exc:
        raise CliError(str(exc)) from None
    finally:
        conn.close()
    if args.json:
        print(json.dumps(job.to_json()))
    elif target:
        print(f"job {job.id} is {job.state}")
    else:
        print(_detail(job))
    return 0


def _eta(job: Any) -> str:
    return eta_text(job.state, job.eta_s(), job.publisher_gone)


def eta_text(state: str, seconds: float | None, publisher_gone: bool = False) -> str:
    """A job's ETA as `jobs` and `status` print it: what to do for a backfill no process
    publishes any more, ``-`` for a job that is not running, ``unknown`` before its first
    outcome, else minutes and seconds (hours and minutes past an hour)."""
    if publisher_gone:
        return "no publisher: run the same backfill again to resume"
    if state != "running":
        return "-"
    if seconds is None:
        return "unknown"
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def _line(j: Any) -> str:
    return (f"{j.id:>6}  {j.kind:10} {j.state:10} {j.done:>10,} {j.failed:>8,} {j.skipped:>8,}"
            f" {j.published:>10,}  {_eta(j)}")  # fmt: skip


def _total(j: Any) -> str:
    """Objects the job's source holds: known from the start (a fleet re-tag's photos), or once a
    listing is exhausted (what it listed)."""
    if j.total is not None:
        return f"{j.total:,}"
    return f"{j.listed:,} (listed)" if j.source_done else "unknown until the listing ends"


def _detail(j: Any) -> str:
    rate = j.rate_per_s()
    lines = [
        f"job {j.id}: {j.kind}, {j.state}",
        f"  params     {json.dumps(j.params)}",
        f"  total      {_total(j)}",
    ]
    lines += [f"  {name:10} {getattr(j, name):,}" for name in
              ("listed", "published", "done", "failed", "skipped")]  # fmt: skip
    lines += [
        f"  rate       {'unknown' if rate is None else f'{rate:,.1f}/s'}",
        f"  eta        {_eta(j)}",
        f"  started    {j.started_at.isoformat()}",
        f"  updated    {j.updated_at.isoformat()}",
    ]
    if j.finished_at:
        lines.append(f"  finished   {j.finished_at.isoformat()}")
    if j.checkpoint is not None:
        lines.append(f"  checkpoint {json.dumps(j.checkpoint)}")
    if j.error:
        lines.append(f"  error      {j.error}")
    return "\n".join(lines)
