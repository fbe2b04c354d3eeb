-- Library jobs count each photo once: a photo row remembers the last job that counted it, so
-- a task delivered twice (a resumed backfill re-publishing its last page, a killed worker's
-- redelivery) is counted against its job only the first time. No foreign key: a job row may
-- be pruned without touching photos.
ALTER TABLE photos ADD COLUMN IF NOT EXISTS job_id bigint;
