"""`sightline backfill` arguments a trial broke: a rate that is no number of tasks/s, a
--resume of another job's source, and SIGHTLINE_EXCLUDE in the photos-table selections."""

from __future__ import annotations

import pytest

from handlers.rules import Exclusions
from sightline.backfill.select import photo_pages
from tests.support import run_cli, worker_env
from workers import jobs
from workers.store import write_photos


@pytest.mark.slow
@pytest.mark.parametrize("rate", ["nan", "inf", "-1", "0", "1e-300"])
def test_a_rate_that_is_no_number_of_tasks_is_refused_before_any_job(
    db, db_url, redis_url, moto_endpoint, rate
) -> None:
    out = run_cli("backfill", "s3://photos", f"--rate={rate}",
                  env=worker_env(db_url, redis_url, moto_endpoint))  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("sightline: error: --rate must be a number of tasks/s from 0.001")
    assert len(out.stderr.splitlines()) == 1
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs")
        assert cur.fetchone()[0] == 0


@pytest.mark.slow
def test_resume_refuses_another_source_or_selection(db, db_url, redis_url, moto_endpoint) -> None:
    """--resume N with a source or selection other than the job's was taken: it listed the
    command's bucket under the job's selection and checkpoint, and moved another job's
    photos to this one."""
    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "backfill", {"source": "s3://other", "selection": "all"})
    env = worker_env(db_url, redis_url, moto_endpoint)
    for args in (["s3://photos", "--all"], ["s3://other"]):
        out = run_cli("backfill", *args, "--resume", str(job_id), env=env)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith(f"sightline: error: job {job_id} backfills ")
        assert "resume it with the same source and selection" in out.stderr
    with db, db.cursor() as cur:
        job = jobs.get(cur, job_id)
    assert (job.state, job.published, job.checkpoint) == ("running", 0, None)


@pytest.mark.parametrize("selection", ["stale-model", "failed"])
def test_photos_table_selections_leave_out_excluded_keys(db, selection) -> None:
    keys = ["users/a/1.jpg", "users/a/.thumbnails/1.jpg", "users/a/@eaDir/2.jpg", "users/a/3.jpg"]
    status = "tagged" if selection == "stale-model" else "failed"
    items = [{"owner": "a", "bucket": "photos", "key": k, "status": status,
              "model_version": "old", "error": None if status == "tagged" else "bad"}
             for k in keys]  # fmt: skip
    with db, db.cursor() as cur:
        write_photos(cur, items)
        job_id = jobs.create(cur, "backfill", {"source": "s3://photos", "selection": selection})
        skip = Exclusions.parse("*/.thumbnails/*,*/@eaDir/*")
        pages = list(photo_pages(cur, bucket="photos", prefix="", selection=selection,
                                 job_id=job_id, model_version="new", exclude=skip))  # fmt: skip
    assert [t["key"] for w in pages for t in w.tasks] == ["users/a/1.jpg", "users/a/3.jpg"]
