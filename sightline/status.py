"""What the database says about the system: photos by status, failures, releases."""

from __future__ import annotations

from typing import Any

STATUSES = ("pending", "tagged", "failed", "gone", "deleted")


def photo_counts(cur: Any) -> dict[str, int]:
    """Photos per status (every status present, zeros included) and the total."""
    cur.execute("SELECT status, count(*) FROM photos GROUP BY status")
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


def live_jobs(cur: Any) -> list[dict[str, Any]]:
    """Running and paused library jobs with their counts, rate and ETA, newest first."""
    from workers import jobs

    return [j.to_json() for j in jobs.list_jobs(cur, live_only=True)]


def database_report(cur: Any, *, failures: int = 10) -> dict[str, Any]:
    """Everything `sightline status` reads from Postgres, as one JSON-able dict."""
    rel = releases(cur)
    return {
        "jobs": live_jobs(cur),
        "photos": photo_counts(cur),
        "failure_reasons": failure_reasons(cur),
        "last_failures": last_failures(cur, failures),
        "active_release": next((r for r in rel if r["status"] == "active"), None),
        "other_releases": [r for r in rel if r["status"] != "active"],
    }
