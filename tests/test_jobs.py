"""Library jobs as rows: counters, checkpoints, state moves and the `sightline jobs` command."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.support import run_cli, wait_for
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


def test_a_job_of_unknown_size_has_no_eta_until_its_source_ends(db) -> None:
    """Against what was published so far, a listing whose workers kept up with its --rate
    read 0m00s for the whole run."""
    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "backfill", {"source": "s3://b/p"})
        jobs.add(cur, job_id, listed=40, published=35, done=30)
        cur.execute("UPDATE jobs SET started_at = updated_at - interval '30 seconds' "
                    "WHERE id = %s", (job_id,))  # fmt: skip
        assert jobs.get(cur, job_id).eta_s() is None
        jobs.save_checkpoint(cur, job_id, {"complete": True})
        cur.execute("UPDATE jobs SET started_at = updated_at - interval '30 seconds' "
                    "WHERE id = %s", (job_id,))  # fmt: skip
        assert jobs.get(cur, job_id).eta_s() == pytest.approx(5.0)  # 5 left at 1/s


def test_a_listing_job_shows_its_total_once_the_listing_ends(db) -> None:
    """A bucket listing's size is not known in advance: `jobs show` says so while it lists,
    and gives what it listed once the source is exhausted (it said "unknown" for ever)."""
    from sightline.commands.jobs import _detail

    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "backfill", {"source": "s3://b"})
        jobs.save_checkpoint(cur, job_id, {"token": "t"}, listed=500, published=5)
        assert not jobs.get(cur, job_id).source_done
        listing = _detail(jobs.get(cur, job_id))
        jobs.save_checkpoint(cur, job_id, {"token": "t", "complete": True}, listed=20)
        done = _detail(jobs.get(cur, job_id))
    assert "  total      unknown until the listing ends" in listing.splitlines()
    assert "  total      520 (listed)" in done.splitlines()


def test_state_moves(db) -> None:
    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "retag", {"release": "r2"})
        assert jobs.move(cur, job_id, "paused").state == "paused"
        assert jobs.state_of(cur, job_id) == "paused"
        with pytest.raises(jobs.JobError, match="cannot become done"):
            jobs.move(cur, job_id, "done")  # a paused job is resumed or cancelled, not finished
        assert jobs.move(cur, job_id, "running").state == "running"
        done = jobs.move(cur, job_id, "done")
        assert done.finished_at is not None and done.eta_s() is None  # not running: no ETA
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


def test_jobs_list_shows_no_eta_for_a_job_that_is_not_running(db) -> None:
    """`jobs list`/`show` print '-' as the ETA of a paused, done or cancelled job (not
    0m00s), 'unknown' for a running one without an outcome yet, else the time left."""
    from sightline.commands.jobs import _detail, _line

    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "retag", {"release": "r"}, total=100)
        fresh = jobs.get(cur, job_id)
        jobs.add(cur, job_id, published=100, done=50)
        cur.execute("UPDATE jobs SET started_at = updated_at - interval '100 seconds' "
                    "WHERE id = %s", (job_id,))  # fmt: skip
        running = jobs.get(cur, job_id)
        paused = jobs.move(cur, job_id, "paused")
        cancelled = jobs.move(cur, job_id, "cancelled")
    assert _line(fresh).split()[-1] == "unknown"
    assert _line(running).split()[-1] == "1m40s"  # 50 left at 0.5/s
    # `sightline status` prints the ETA as `jobs` does (it printed "100 s")
    from sightline.commands.status import job_line

    assert job_line(running.to_json()).endswith("(eta 1m40s)")
    for job in (paused, cancelled):
        assert job.eta_s() is None
        assert _line(job).split()[-1] == "-"
        assert "  eta        -" in _detail(job).splitlines()


def test_a_backfill_no_process_publishes_says_so(db, db_url) -> None:
    """A live backfill whose listing is not done and whose publisher's session lock is free
    (killed, terminal closed) shows how to resume it in place of an ETA; while a session
    holds the lock, or once the listing is done, it does not."""
    import psycopg2

    from sightline.commands.jobs import _line
    from sightline.commands.status import job_line

    with db, db.cursor() as cur:
        job_id = jobs.create(cur, "backfill", {"source": "s3://b", "selection": "missing"})
        other = jobs.create(cur, "retag", {"release": "r"})
    publisher = psycopg2.connect(db_url)
    publisher.autocommit = True
    with publisher.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (jobs.PUBLISHER_LOCK, job_id))
        assert cur.fetchone()[0]
    with db, db.cursor() as cur:
        assert not jobs.get(cur, job_id).publisher_gone
    publisher.close()  # its lock goes with the session, as with a kill -9

    def released() -> bool:  # the server ends the session a moment after the client goes
        with db, db.cursor() as cur:
            return jobs.get(cur, job_id).publisher_gone

    wait_for(released, timeout=10, what="the closed session's lock to go")
    with db, db.cursor() as cur:
        gone = jobs.get(cur, job_id)
        assert gone.publisher_gone and not jobs.get(cur, other).publisher_gone
        listed = {j.id: j.publisher_gone for j in jobs.list_jobs(cur, live_only=True)}
        jobs.save_checkpoint(cur, job_id, {"complete": True})
        done_listing = jobs.get(cur, job_id)
    assert listed == {job_id: True, other: False}
    assert _line(gone).endswith("no publisher: run the same backfill again to resume")
    assert "no publisher" in job_line(gone.to_json())
    assert gone.to_json()["publisher_gone"] is True
    assert not done_listing.publisher_gone
