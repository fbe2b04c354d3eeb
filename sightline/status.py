"""What the database says about the system: photos by status, failures, releases."""

from __future__ import annotations

from typing import Any

STATUSES = ("tagged", "failed", "gone", "deleted", "ignored")  # every status the worker writes


def photo_counts(cur: Any) -> dict[str, int]:
    """Photos per status (every status present, zeros included) and the total.

    Read from ``photo_status_counts`` (kept by a trigger on photos, 0012_storage.sql): a few
    hundred counter rows, not a scan of every photo.
    """
    cur.execute("SELECT status, sum(photos) FROM photo_status_counts GROUP BY status")
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(n) for status, n in cur.fetchall()})
    counts["total"] = sum(counts.values())
    return counts


def failure_reasons(cur: Any, limit: int = 5) -> list[dict[str, Any]]:
    """Failed photos grouped by the error's leading phrase (the part before the first ':')."""
    cur.execute(
        "SELECT split_part(coalesce(error, 'no reason recorded'), ':', 1) AS reason, count(*) "
        "FROM photos WHERE status = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s",
        (limit,),
    )
    return [{"reason": reason, "photos": int(n)} for reason, n in cur.fetchall()]


def last_failures(cur: Any, limit: int = 10) -> list[dict[str, Any]]:
    """The most recently failed photos with their reasons, newest first."""
    cur.execute(
        "SELECT owner, bucket, key, error, attempts, updated_at FROM photos "
        "WHERE status = 'failed' ORDER BY updated_at DESC, id DESC LIMIT %s",
        (limit,),
    )
    return [
        {
            "owner": owner,
            "bucket": bucket,
            "key": key,
            "error": error,
            "attempts": attempts,
            "at": at.isoformat(),
        }
        for owner, bucket, key, error, attempts, at in cur.fetchall()
    ]


def releases(cur: Any) -> list[dict[str, Any]]:
    """Releases that are not retired, with their landmark and centroid counts."""
    cur.execute(
        "SELECT r.version, r.status, r.model_version, r.embedding_dim, r.activated_at, "
        "(SELECT count(*) FROM landmarks l WHERE l.release = r.version), "
        "(SELECT count(*) FROM centroids c WHERE c.release = r.version) "
        "FROM releases r WHERE r.status <> 'retired' ORDER BY r.imported_at, r.version"
    )
    return [
        {
            "version": version,
            "status": status,
            "model_version": model_version,
            "embedding_dim": dim,
            "activated_at": activated.isoformat() if activated else None,
            "landmarks": int(landmarks),
            "centroids": int(centroids),
        }
        for version, status, model_version, dim, activated, landmarks, centroids in cur.fetchall()
    ]


def live_workers(cur: Any, within_s: float) -> list[dict[str, Any]]:
    """Workers whose heartbeat row was written in the last ``within_s`` seconds."""
    cur.execute("SELECT to_regclass('worker_heartbeats') IS NOT NULL")
    if not cur.fetchone()[0]:
        return []
    cur.execute(
        "SELECT hostname, pid, model_version, scene_map_version, queues, releases,"
        " started_at, extract(epoch FROM now() - seen_at) FROM worker_heartbeats"
        " WHERE seen_at > now() - make_interval(secs => %s) ORDER BY hostname",
        (within_s,),
    )
    return [
        {
            "hostname": host,
            "pid": pid,
            "model_version": model,
            "scene_map_version": scene_map,
            "queues": list(queues),
            "releases": list(rels),
            "started_at": started.isoformat(),
            "seen_s_ago": round(float(ago), 1),
        }
        for host, pid, model, scene_map, queues, rels, started, ago in cur.fetchall()
    ]


def scene_map(cur: Any) -> dict[str, Any] | None:
    """The scene map in force: version, where it came from, since when."""
    cur.execute("SELECT to_regclass('scene_map_in_force') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute(
        "SELECT f.version, m.source, f.since FROM scene_map_in_force f"
        " JOIN scene_maps m USING (version)"
    )
    row = cur.fetchone()
    return (
        None if row is None else {"version": row[0], "source": row[1], "since": row[2].isoformat()}
    )


def tagged_heads(cur: Any) -> list[dict[str, Any]]:
    """Tagged photos per model version and per head's provenance (None: tagged before rows
    recorded it), most photos first.

    Read from ``photo_head_counts`` (counters kept by triggers on photos, migration 0023):
    at most one row per (model version, provenance) and writing session's slot (1,025), not
    a scan of every tagged photo.
    """
    cur.execute(
        "SELECT model_version, scene_trained, embedding_trained, sum(photos) "
        "FROM photo_head_counts GROUP BY 1, 2, 3 HAVING sum(photos) <> 0 ORDER BY 4 DESC, 1"
    )
    return [
        {
            "model_version": mv,
            "scene_trained": scene,
            "embedding_trained": embedding,
            "photos": int(n),
        }
        for mv, scene, embedding, n in cur.fetchall()
    ]


def live_jobs(cur: Any) -> list[dict[str, Any]]:
    """Running and paused library jobs with their counts, rate and ETA, newest first."""
    from workers import jobs

    return [j.to_json() for j in jobs.list_jobs(cur, live_only=True)]


def database_report(cur: Any, *, failures: int = 10) -> dict[str, Any]:
    """Everything `sightline status` reads from Postgres, as one JSON-able dict."""
    from workers.heartbeat import HEARTBEAT_S

    rel = releases(cur)
    return {
        "workers": live_workers(cur, 3 * HEARTBEAT_S),
        "scene_map": scene_map(cur),
        "jobs": live_jobs(cur),
        "photos": photo_counts(cur),
        "tagged_by": tagged_heads(cur),
        "failure_reasons": failure_reasons(cur),
        "last_failures": last_failures(cur, failures),
        # One active release per model version (two during a model switch), by model.
        "active_releases": sorted(
            (r for r in rel if r["status"] == "active"),
            key=lambda r: (r["model_version"], r["version"]),
        ),
        "other_releases": [r for r in rel if r["status"] != "active"],
    }
