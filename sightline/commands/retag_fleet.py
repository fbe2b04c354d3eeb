"""`sightline retag` on the fleet: plan the job's chunks, publish one task per pending chunk
on the maintenance queue, and (with --wait) follow the job row until it ends."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sightline.cli import CliError


def publish_chunks(broker_url: str, job_id: int, chunks: list[int]) -> int:
    """Send one ``sightline.retag_chunk`` task per chunk; returns how many were sent."""
    from celery import Celery

    from handlers.contract import MAINTENANCE_QUEUE, RETAG_CHUNK_TASK

    app = Celery("sightline-retag", broker=broker_url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    with app.producer_or_acquire() as producer:
        for chunk in chunks:
            app.send_task(
                RETAG_CHUNK_TASK,
                kwargs={"job_id": job_id, "chunk": chunk},
                queue=MAINTENANCE_QUEUE,
                producer=producer,
            )
    return len(chunks)


def follow(conn: Any, job_id: int, *, progress: bool, poll_s: float = 0.5) -> Any:
    """Poll the job row until it is final (or paused); returns the job."""
    from tqdm import tqdm

    from workers import jobs

    with conn, conn.cursor() as cur:
        job = jobs.get(cur, job_id)
    with tqdm(total=job.total, unit="photo", desc=f"job {job_id}", disable=not progress) as bar:
        while True:
            bar.n = job.done
            bar.refresh()
            if job.state in jobs.FINAL or job.state == "paused":
                return job
            time.sleep(poll_s)
            with conn, conn.cursor() as cur:
                job = jobs.get(cur, job_id)


def run_fleet(args: argparse.Namespace, settings: Any, url: str, scene_map: Any, k: int = 3) -> int:
    """Plan, publish and (with --wait) follow the fleet jobs of `sightline retag`; prints the
    same --json schema as --local (sightline/commands/retag.py). Returns the exit code: 1
    when a followed job failed or was cancelled."""
    from sightline.commands.retag import RELEASE_KEYS, SCENE_MAP_KEYS, one_schema
    from workers import jobs
    from workers.db import connect
    from workers.releases import ReleaseRefused
    from workers.retag_fleet import pending_chunks, plan_remap, plan_retag
    from workers.scenemaps import install

    conn = connect(url, timeout_s=max(settings.db_timeout_s, 300))
    out: dict[str, Any] = {}
    try:
        if args.release:  # the input first: a missing release says so before the broker
            with conn, conn.cursor() as cur:
                cur.execute("SELECT 1 FROM releases WHERE version = %s", (args.release,))
                if cur.fetchone() is None:
                    raise ReleaseRefused(f"no release {args.release!r} is imported")
        if not settings.broker_url:
            raise CliError(
                "CELERY_BROKER_URL is not set: the fleet re-tag publishes to the maintenance "
                "queue (or run it in this process with --local)"
            )
        plans = []
        if args.release:
            plans.append(
                plan_retag(
                    conn, args.release, chunk_size=args.chunk_size,
                    make_active=not args.no_activate,
                )
            )  # fmt: skip
        version = None
        if scene_map is not None:
            # In force first, then the re-file: workers file new photos by it from now on
            # (their writes check the version in force), the chunks do the photos before.
            version = install(conn, scene_map, f"retag --scene-map {args.scene_map}")
            plans.append(plan_remap(conn, scene_map, chunk_size=args.chunk_size, k=k))
        sent: dict[str, int] = {}
        for plan in plans:
            try:
                sent[plan.kind] = publish_chunks(settings.broker_url, plan.job_id, plan.pending)
            except Exception as exc:  # kombu's OperationalError, the transport's own errors
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CliError(
                    f"cannot publish the re-tag's chunks to {settings.broker_url}: {first}; "
                    f"job {plan.job_id} is kept: run the same command again to resume it"
                ) from None
            if not plan.resumed:  # counted in photos, like listed and done; once per job
                with conn, conn.cursor() as cur:
                    jobs.add(cur, plan.job_id, published=plan.photos)
        for plan in plans:
            if args.wait:
                follow(conn, plan.job_id, progress=not args.no_progress)
            with conn, conn.cursor() as cur:  # as the job stands now, not as it was planned
                job = jobs.get(cur, plan.job_id)
                pending = len(pending_chunks(cur, plan.job_id))
            fleet = {
                "mode": "fleet",
                "state": job.state,
                "photos": plan.photos,
                "done": job.done,
                "resumed": plan.resumed,
                "job": plan.job_id,
                "chunks": plan.chunks,
                "pending": pending,
                "published": sent[plan.kind],
                "error": job.error,
            }
            if plan.kind == "retag":
                out["release"] = one_schema(
                    RELEASE_KEYS, release=args.release, **fleet, **_release_after(conn, job)
                )
            else:
                out["scene_map"] = one_schema(
                    SCENE_MAP_KEYS,
                    version=version,
                    max_albums=k,
                    thresholds=len(scene_map.thresholds),
                    **fleet,
                )
    except ReleaseRefused as exc:
        raise CliError(str(exc)) from None
    finally:
        conn.close()
    if args.json:
        print(json.dumps(out))
    else:
        for part, o in out.items():
            name = f"release {o['release']}" if part == "release" else f"scene map {o['version']}"
            verb = "resumed" if o["resumed"] else "started"
            print(
                f"{name}: job {o['job']} {verb}: {o['chunks']} chunks, {o['published']} tasks "
                f"published for {o['photos']} photos"
                + (
                    f"; {o['state']}"
                    if o["state"] != "running"
                    else f"; see: sightline jobs show {o['job']}"
                )
            )
    failed = [o for o in out.values() if o.get("state") in ("failed", "cancelled")]
    return 1 if failed else 0


def _release_after(conn: Any, job: Any) -> dict[str, Any]:
    """The release's status now and, for a job that ended, its matches, time and the
    release its activation replaced (the job's checkpoint)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM releases WHERE version = %s", (job.params["release"],))
        row = cur.fetchone()
        got: dict[str, Any] = {"status": row[0] if row else None}
        if job.state != "done":
            return got
        cur.execute("SELECT sum(matches) FROM retag_chunks WHERE job_id = %s", (job.id,))
        got["matches"] = int(cur.fetchone()[0] or 0)
    seconds = (job.finished_at - job.started_at).total_seconds() if job.finished_at else None
    got["seconds"] = round(seconds, 3) if seconds else None
    got["photos_per_s"] = round(job.done / seconds, 1) if seconds else None
    got["replaced"] = (job.checkpoint or {}).get("replaced")
    return got
