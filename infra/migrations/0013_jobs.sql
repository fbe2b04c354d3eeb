-- Library jobs (backfill, fleet re-tag, scene re-file) as rows: what a job was asked to do, where
-- it stands and where a killed one resumes. Workers count their completions here, so "done"
-- means written to photos, not published to the broker.
CREATE TABLE IF NOT EXISTS jobs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,                      -- backfill | retag | remap | ...
    params      jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the command's own arguments
    state       text NOT NULL DEFAULT 'running'
                CHECK (state IN ('running', 'paused', 'done', 'failed', 'cancelled')),
    total       bigint,                             -- known when the source says (chunks, rows)
    listed      bigint NOT NULL DEFAULT 0,
    published   bigint NOT NULL DEFAULT 0,
    done        bigint NOT NULL DEFAULT 0,
    failed      bigint NOT NULL DEFAULT 0,
    skipped     bigint NOT NULL DEFAULT 0,
    checkpoint  jsonb,                              -- continuation token, inventory file + row, ...
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- `sightline status` and the metrics list the live jobs only.
CREATE INDEX IF NOT EXISTS jobs_live ON jobs (id) WHERE state IN ('running', 'paused');
