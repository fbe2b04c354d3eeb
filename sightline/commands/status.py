"""`sightline status`: photos by status, recent failures, the active release, queue depths."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="photos by status, failures, release, queue depths")
    p.add_argument("--json", action="store_true")
    p.add_argument("--failures", type=int, default=10, help="how many recent failures to list")
    p.add_argument("--queues", default="tag,maintenance", help="comma-separated queues")
    p.set_defaults(func=status)


def status(args: argparse.Namespace) -> int:
    import psycopg2

    from sightline.embedded import database_url
    from sightline.queues import queue_depths
    from sightline.settings import Settings
    from sightline.status import database_report
    from workers.db import connect

    if args.failures < 0:
        raise CliError("--failures must be 0 or more")
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues:
        raise CliError("--queues needs at least one queue name")
    try:
        options = json.loads(os.environ.get("SIGHTLINE_BROKER_OPTIONS") or "{}")
    except json.JSONDecodeError as exc:
        raise CliError(f"SIGHTLINE_BROKER_OPTIONS is not JSON: {exc}") from None
    settings = Settings.from_env()
    url, _server = database_url(settings)
    conn = connect(url, timeout_s=settings.db_timeout_s, register=False)
    try:
        with conn, conn.cursor() as cur:
            report = database_report(cur, failures=args.failures)
    except psycopg2.errors.UndefinedTable:
        raise CliError("the database has no sightline schema: run `sightline db upgrade`") from None
    finally:
        conn.close()
    report["queues"] = queue_depths(settings.broker_url, queues, options).to_json()
    if args.json:
        print(json.dumps(report))
    else:
        print(_text(report))
    return 0


def _text(r: dict[str, Any]) -> str:
    lines = ["photos"]
    lines += [f"  {status:10} {n:>12,}" for status, n in r["photos"].items()]
    rel = r["active_release"]
    if rel:
        lines.append(
            f"active release  {rel['version']} (model {rel['model_version']}, "
            f"{rel['landmarks']:,} landmarks, {rel['centroids']:,} centroids, "
            f"activated {rel['activated_at']})"
        )
    else:
        lines.append("active release  none")
    for other in r["other_releases"]:
        lines.append(f"release         {other['version']} ({other['status']})")
    for j in r["jobs"]:
        eta = j["eta_s"]
        lines.append(
            f"job {j['id']:<6} {j['kind']} {j['state']}: {j['done']:,} done, "
            f"{j['failed']:,} failed, {j['skipped']:,} skipped of {j['published']:,} published"
            f" (eta {'unknown' if eta is None else f'{eta:,.0f} s'})"
        )
    q = r["queues"]
    lines.append(f"queues on {q['broker'] or 'no broker'} ({q['kind']})")
    if q["error"]:
        lines.append(f"  unknown: {q['error']}")
    for name, depth in q["depths"].items():
        consumers = q["consumers"]
        extra = f"  ({consumers[name]} consumers)" if consumers and name in consumers else ""
        lines.append(f"  {name:12} {'unknown' if depth is None else f'{depth:,}':>12}{extra}")
    if r["failure_reasons"]:
        lines.append("failures by reason")
        lines += [f"  {f['photos']:>8,}  {f['reason']}" for f in r["failure_reasons"]]
    if r["last_failures"]:
        lines.append("last failures")
        for f in r["last_failures"]:
            lines.append(
                f"  {f['at']}  s3://{f['bucket']}/{f['key']} (owner {f['owner']}, "
                f"{f['attempts']} attempt(s)): {f['error']}"
            )
    return "\n".join(lines)
