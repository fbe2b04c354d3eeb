"""`sightline status`: photos by status, recent failures, the active releases (one per model
version: two during a model switch), the scene map in force, per queue ready and in-flight
counts, the oldest waiting photo, the live workers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from handlers.contract import QUEUES
from sightline.cli import CliError
from sightline.commands.jobs import eta_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="photos by status, failures, release, scene map, queues (ready, in flight), workers",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--failures", type=int, default=10, help="how many recent failures to list")
    p.add_argument("--queues", default=",".join(QUEUES), help="comma-separated queues")
    p.set_defaults(func=status)


def status(args: argparse.Namespace) -> int:
    import psycopg2

    from sightline.embedded import database_url
    from sightline.queues import queue_depths
    from sightline.status import database_report
    from workers.db import connect
    from workers.settings import Settings

    if not 0 <= args.failures <= 10_000:  # a LIMIT: bigint and the terminal bound it anyway
        raise CliError(f"--failures must be 0 to 10000, not {args.failures}")
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues:
        raise CliError("--queues needs at least one queue name")
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
    report["queues"] = queue_depths(settings.broker_url, queues, settings.broker_options).to_json()
    report["model"] = model_report(settings)
    if args.json:
        print(json.dumps(report))
    else:
        print(_text(report))
    return 0


def model_report(settings: Any) -> dict[str, Any]:
    """The weights the workers are set to serve and which of their heads are real."""
    if not settings.weights:
        return {
            "weights": None,
            "untrained_allowed": settings.allow_untrained,
            "heads": {
                "scene": {"trained": False, "source": "no weights"},
                "embedding": {"trained": False, "source": "no weights"},
            },
        }
    from models.checkpoint import CheckpointError, read_meta

    try:
        meta = read_meta(settings.weights)
    except CheckpointError as exc:
        return {"weights": settings.weights, "error": str(exc)}
    return {
        "weights": settings.weights,
        "model_version": meta.model_version,
        "heads": meta.heads(),
        "serves_landmarks": meta.serves_landmarks,
    }


def _head(h: dict[str, Any]) -> str:
    return f"{'real' if h['trained'] else 'UNTRAINED'} ({h['source']})"


def _yes(flag: bool | None) -> str:
    return "unknown" if flag is None else "real" if flag else "UNTRAINED"


def _model_lines(m: dict[str, Any]) -> list[str]:
    """The report's model lines (``model_report``'s dict)."""
    if m.get("error"):
        lines = [f"model           {m['error']}"]  # the error names the file already
    elif m["weights"] is None:
        allowed = "SIGHTLINE_ALLOW_UNTRAINED is set" if m["untrained_allowed"] else "refused"
        lines = [f"model           no SIGHTLINE_WEIGHTS: untrained network ({allowed})"]
    else:
        lines = [
            f"model           {m['model_version']} ({m['weights']})",
            f"  scene head            {_head(m['heads']['scene'])}",
            f"  landmark embedding    {_head(m['heads']['embedding'])}"
            + ("" if m["serves_landmarks"] else ": landmark matching off"),
        ]
    return lines


def job_line(j: dict[str, Any]) -> str:
    """A live job in `status`, from its JSON (``workers.jobs.Job.to_json``)."""
    return (
        f"job {j['id']:<6} {j['kind']} {j['state']}: {j['done']:,} done, "
        f"{j['failed']:,} failed, {j['skipped']:,} skipped of {j['published']:,} published"
        f" (eta {eta_text(j['state'], j['eta_s'], j.get('publisher_gone', False))})"
    )


def _text(r: dict[str, Any]) -> str:
    lines = _model_lines(r["model"])
    lines.append("photos")
    lines += [f"  {status:10} {n:>12,}" for status, n in r["photos"].items()]
    for t in r["tagged_by"]:
        lines.append(
            f"  tagged by {t['model_version']}: {t['photos']:,} (scene head "
            f"{_yes(t['scene_trained'])}, embedding head {_yes(t['embedding_trained'])})"
        )
    # One line per active release: one per model version, so two while a model switch runs.
    for rel in r["active_releases"]:
        lines.append(
            f"active release  {rel['version']} (model {rel['model_version']}, "
            f"{rel['landmarks']:,} landmarks, {rel['centroids']:,} centroids, "
            f"activated {rel['activated_at']})"
        )
    if not r["active_releases"]:
        lines.append("active release  none")
    for other in r["other_releases"]:
        lines.append(f"release         {other['version']} ({other['status']})")
    sm = r["scene_map"]
    lines.append(
        f"scene map       {sm['version']} (from {sm['source']}, since {sm['since']})"
        if sm
        else "scene map       none stored (workers file by their own until one starts)"
    )
    lines += [job_line(j) for j in r["jobs"]]
    q = r["queues"]
    lines.append(f"queues on {q['broker'] or 'no broker'} ({q['kind']})")
    if q["error"]:
        lines.append(f"  unknown: {q['error']}")

    def n(value: int | None) -> str:
        return "unknown" if value is None else f"{value:,}"

    lines.append(f"  {'queue':12} {'ready':>12} {'in flight':>12}")
    for name, depth in q["depths"].items():
        consumers = q["consumers"]
        extra = f"  ({consumers[name]} consumers)" if consumers and name in consumers else ""
        lines.append(f"  {name:12} {n(depth):>12} {n(q['in_flight'].get(name)):>12}{extra}")
    if q["in_flight_note"]:
        lines.append(f"  in flight: {q['in_flight_note']}")
    old = q["oldest_waiting"]
    if old:
        age = "unknown age" if old["age_s"] is None else f"{old['age_s']:,.0f} s"
        lines.append(f"oldest waiting  {age}: s3://{old['bucket']}/{old['key']} ({old['queue']})")
    lines.append(f"live workers    {len(r['workers'])}")
    for w in r["workers"]:
        lines.append(
            f"  {w['hostname']} (pid {w['pid']}): model {w['model_version']}, scene map "
            f"{w['scene_map_version']}, queues {','.join(w['queues'])}, "
            f"seen {w['seen_s_ago']:.0f} s ago"
        )
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
