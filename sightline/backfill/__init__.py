"""Library jobs that onboard a bucket's existing photos and re-run failed or stale ones.

A backfill lists a source (``sources``: ListObjectsV2 pages, an S3 Inventory manifest, or the
photos table for ``--stale-model`` and ``--failed``), picks what needs work (``select``) and
publishes the same tasks an upload would through the handler's publisher (``run``), with
backpressure on the tag queue, a rate limit and a checkpoint per page in its ``jobs`` row.
Workers count each task's outcome against the job (``workers.job_tasks``).
"""
