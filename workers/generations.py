"""Model generations and what a release changes: `release diff` and `release retire`.

During a model switch one release per model version is active and every photo is read
through the active release of its own model version (infra/migrations/0015). The old model's
release retires by command once no visible photo of that model is left.
"""

from __future__ import annotations

from typing import Any

from workers.releases import ReleaseRefused

# A release whose matches are complete: re-tagged (ready), serving (active) or served before.
_DIFFABLE = ("ready", "active", "retired")


def _status(cur: Any, version: str) -> tuple[str, str]:
    cur.execute("SELECT status, model_version FROM releases WHERE version = %s", (version,))
    row = cur.fetchone()
    if row is None:
        raise ReleaseRefused(f"no release {version!r} is imported")
    return row[0], row[1]


def release_diff(cur: Any, old: str, new: str, *, top: int = 10) -> dict[str, Any]:
    """Photos gained and lost per landmark going from release ``old`` to ``new``.

    Compares the stored matches (photo, landmark) of both releases over visible photos:
    gained = matched under ``new`` and not under ``old``; lost = the reverse. Works before
    activation (``new`` ready) and after (``old`` retired). Returns totals and the ``top``
    landmarks by gained + lost; raises ReleaseRefused for a release whose re-tag is not
    complete (imported, retagging).
    """
    statuses = {}
    for v in (old, new):
        status, model = _status(cur, v)
        if status not in _DIFFABLE:
            raise ReleaseRefused(
                f"release {v} is {status}: its matches are not complete; "
                f"run `sightline retag --release {v} --no-activate` first"
            )
        statuses[v] = (status, model)
    cur.execute(
        """
        WITH o AS (SELECT m.photo_id, m.landmark_id FROM landmark_matches m
                   JOIN photos p ON p.id = m.photo_id AND p.status = 'tagged'
                   WHERE m.release = %(old)s),
             n AS (SELECT m.photo_id, m.landmark_id FROM landmark_matches m
                   JOIN photos p ON p.id = m.photo_id AND p.status = 'tagged'
                   WHERE m.release = %(new)s),
             per AS (
                SELECT coalesce(o.landmark_id, n.landmark_id) AS landmark_id,
                       count(o.photo_id) AS before, count(n.photo_id) AS after,
                       count(*) FILTER (WHERE o.photo_id IS NULL) AS gained,
                       count(*) FILTER (WHERE n.photo_id IS NULL) AS lost
                FROM o FULL JOIN n ON o.photo_id = n.photo_id AND o.landmark_id = n.landmark_id
                GROUP BY 1)
        SELECT per.landmark_id, coalesce(ln.name, lo.name), per.before, per.after,
               per.gained, per.lost
        FROM per
        LEFT JOIN landmarks ln ON ln.release = %(new)s AND ln.landmark_id = per.landmark_id
        LEFT JOIN landmarks lo ON lo.release = %(old)s AND lo.landmark_id = per.landmark_id
        ORDER BY per.gained + per.lost DESC, per.landmark_id
        """,
        {"old": old, "new": new},
    )
    rows = [
        {"landmark_id": r[0], "name": r[1], "photos_old": r[2], "photos_new": r[3],
         "gained": r[4], "lost": r[5]}
        for r in cur.fetchall()
    ]  # fmt: skip
    changed = [r for r in rows if r["gained"] or r["lost"]]
    return {
        "old": {"version": old, "status": statuses[old][0], "model_version": statuses[old][1]},
        "new": {"version": new, "status": statuses[new][0], "model_version": statuses[new][1]},
        "totals": {
            "gained": sum(r["gained"] for r in rows),
            "lost": sum(r["lost"] for r in rows),
            "matches_old": sum(r["photos_old"] for r in rows),
            "matches_new": sum(r["photos_new"] for r in rows),
            "landmarks_changed": len(changed),
        },
        "top": changed[: max(0, top)],
    }


def model_photos(cur: Any) -> dict[str, int]:
    """Visible (tagged) photos per model version."""
    cur.execute(
        "SELECT model_version, count(*) FROM photos WHERE status = 'tagged' "
        "AND model_version IS NOT NULL GROUP BY 1"
    )
    return {m: int(n) for m, n in cur.fetchall()}


def retire(conn: Any, version: str) -> dict[str, Any]:
    """Retire an old model's active release once no visible photo of that model is left.

    By command, not automatic: retiring cannot be undone (a retired release was not matched
    against new uploads), and a worker still running the old weights would otherwise lose
    its release under it. Raises ReleaseRefused while photos of the model remain.
    """
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT status, model_version FROM releases WHERE version = %s FOR UPDATE",
            (version,),
        )
        row = cur.fetchone()
        if row is None:
            raise ReleaseRefused(f"no release {version!r} is imported")
        status, model = row
        if status == "retired":
            return {"version": version, "model_version": model, "retired": False}
        if status != "active":
            raise ReleaseRefused(f"release {version} is {status}, not active")
        cur.execute(
            "SELECT count(*) FROM photos WHERE status = 'tagged' AND model_version = %s",
            (model,),
        )
        left = int(cur.fetchone()[0])
        if left:
            raise ReleaseRefused(
                f"{left} photos still carry model {model!r}: re-embed them first "
                f"(`sightline backfill --stale-model`), then retire {version}"
            )
        cur.execute("UPDATE releases SET status = 'retired' WHERE version = %s", (version,))
    return {"version": version, "model_version": model, "retired": True}
