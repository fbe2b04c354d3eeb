"""Library jobs as rows: counters, checkpoints, state moves and the `sightline jobs` command."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.support import run_cli
from workers import jobs


def test_counters_checkpoint_and_eta(db) -> None:
    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "backfill", {"source": "s3://b/p"}, total=100)
        jobs.add(cur, job_id, listed=40, published=40)
        jobs.save_checkpoint(cur, job_id, {"token": "abc"}, listed=10, published=10)
        jobs.add(cur, job_id, done=20, skipped=5, failed=0)
        # 25 outcomes in 50 s: 0.5/s, 75 left of the known total of 100 -> 150 s
        cur.execute("UPDATE jobs SET started_at = updated_at - interval '50 seconds' "
                    "WHERE id = %s", (job_id,))  # fmt: skip
        job = jobs.get(cur, job_id)
    assert (job.listed, job.published, job.done, job.failed, job.skipped) == (50, 50, 20, 0, 5)
    assert job.checkpoint == {"token": "abc"}
    assert job.finished == 25
    assert job.rate_per_s() == pytest.approx(0.5)
    assert job.eta_s() == pytest.approx(150.0)
    assert job.updated_at - job.started_at == timedelta(seconds=50)
    with pytest.raises(ValueError, match="unknown job counters"):
        jobs.add(db.cursor(), job_id, written=1)


def test_state_moves(db) -> None:
    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "retag", {"release": "r2"})
        assert jobs.move(cur, job_id, "paused").state == "paused"
        assert jobs.state_of(cur, job_id) == "paused"
        with pytest.raises(jobs.JobError, match="cannot become done"):
            jobs.move(cur, job_id, "done")  # a paused job is resumed or cancelled, not finished
        assert jobs.move(cur, job_id, "running").state == "running"
        done = jobs.move(cur, job_id, "done")
        assert done.finished_at is not None and done.eta_s() == 0.0
        with pytest.raises(jobs.JobError, match="is done; it cannot become running"):
            jobs.move(cur, job_id, "running")
        with pytest.raises(jobs.JobError, match="no job"):
            jobs.get(cur, job_id + 1000)
        other = jobs.create(cur, "backfill", {})
        assert [j.id for j in jobs.list_jobs(cur, live_only=True)] == [other]
        assert [j.id for j in jobs.list_jobs(cur)] == [other, job_id]


@pytest.mark.slow
def test_jobs_command(db, db_url) -> None:
    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "backfill", {"source": "s3://b"}, total=10)
        jobs.add(cur, job_id, published=10, done=4)
    env = {"DATABASE_URL": db_url}
    out = run_cli("jobs", "list", "--json", env=env)
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert (row["id"], row["state"], row["done"], row["total"]) == (job_id, "running", 4, 10)
    out = run_cli("jobs", "pause", str(job_id), env=env)
    assert out.returncode == 0 and out.stdout.strip() == f"job {job_id} is paused", out.stderr
    out = run_cli("jobs", "show", str(job_id), env=env)
    assert out.returncode == 0 and f"job {job_id}: backfill, paused" in out.stdout
    out = run_cli("jobs", "cancel", str(job_id), env=env)
    assert out.returncode == 0 and "cancelled" in out.stdout
    out = run_cli("jobs", "resume", str(job_id), env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"sightline: error: job {job_id} is cancelled; "
                                  "it cannot become running")  # fmt: skip
    out = run_cli("jobs", "show", "999999", env=env)
    assert out.returncode == 2 and out.stderr.strip() == "sightline: error: no job 999999"
