-- 0016 (issue 18): the one scene map in force, stored with a version, and the live workers.
--
-- Workers file new photos by the map in force and `sightline retag --scene-map` installs a new
-- one. A worker reads scene_map_in_force FOR SHARE in the transaction that writes its photos,
-- and installing updates that one row: a write either commits before the install (and the
-- re-file that follows sees the photo) or after it (and the worker files it by the new map).

CREATE TABLE scene_maps (
    version        integer PRIMARY KEY,
    albums         jsonb NOT NULL,      -- Places365 class -> album label (null: in no album)
    excluded       jsonb NOT NULL,      -- the sift classes: no probability, in no album
    thresholds     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- album -> threshold (issue 15)
    content_sha256 text NOT NULL UNIQUE,
    source         text,                -- where it was installed from (a file, a worker)
    installed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scene_map_in_force (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),  -- a single row
    version integer NOT NULL REFERENCES scene_maps (version),
    since   timestamptz NOT NULL DEFAULT now()
);

-- One row per worker process, written at start and every heartbeat; `sightline status` lists
-- the ones seen lately as live.
CREATE TABLE worker_heartbeats (
    hostname          text PRIMARY KEY,
    pid               integer NOT NULL,
    started_at        timestamptz NOT NULL,
    seen_at           timestamptz NOT NULL,
    model_version     text,
    scene_map_version integer,
    queues            text[] NOT NULL,
    releases          text[] NOT NULL DEFAULT '{}'
);
