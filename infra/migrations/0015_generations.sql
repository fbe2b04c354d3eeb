-- Fleet re-tag and model generations.

-- 1. A fleet re-tag (`sightline retag`, jobs of kind retag | remap) splits the stored photos
-- into photo-id ranges (after_id, last_id]; each range is one task on the maintenance queue
-- and one row here. A chunk is written, marked done and counted in its job in one
-- transaction, so a redelivered or repeated chunk changes nothing.
CREATE TABLE IF NOT EXISTS retag_chunks (
    job_id    bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chunk     integer NOT NULL,
    after_id  bigint NOT NULL,                 -- exclusive
    last_id   bigint NOT NULL,                 -- inclusive
    state     text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    photos    bigint,                          -- photos the chunk re-matched or re-filed
    matches   bigint,                          -- landmark matches it wrote (retag only)
    worker    text,                            -- host name of the worker that wrote it
    started_at timestamptz,                    -- the writing transaction's start
    done_at   timestamptz,                     -- its end (clock time): per-chunk throughput
    PRIMARY KEY (job_id, chunk)
);
CREATE INDEX IF NOT EXISTS retag_chunks_pending ON retag_chunks (job_id) WHERE state = 'pending';

-- 2. Model generations: one active release per model version, not one in all. During a model
-- switch the old model's release and the new model's release are both active, and each photo
-- is read through the active release of its own model version.
DROP INDEX IF EXISTS releases_one_active;
CREATE UNIQUE INDEX IF NOT EXISTS releases_one_active_per_model ON releases (model_version)
    WHERE status = 'active';

-- landmark_albums: latest definition from 0001_init.sql with the attributes of
-- 0008_album_reader.sql. Changed: a match counts only through the active release of the
-- photo's own model version (v.model_version = r.model_version), and albums group by landmark
-- id across active releases (name, city and country from the newest activated release; the
-- `release` column names the newest one the album's photos are read through).
CREATE OR REPLACE FUNCTION landmark_albums(p_owner text)
RETURNS TABLE (country text, city text, landmark_id text, name text, photos bigint,
               cover_photo_id bigint, release text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT (array_agg(l.country ORDER BY r.activated_at DESC, r.version DESC))[1],
           (array_agg(l.city ORDER BY r.activated_at DESC, r.version DESC))[1],
           m.landmark_id,
           (array_agg(l.name ORDER BY r.activated_at DESC, r.version DESC))[1],
           count(*),
           (array_agg(v.id ORDER BY v.sort_at DESC, v.id DESC))[1],
           (array_agg(r.version ORDER BY r.activated_at DESC, r.version DESC))[1]
    FROM releases r
    JOIN landmark_matches m ON m.release = r.version
    JOIN landmarks l ON l.release = m.release AND l.landmark_id = m.landmark_id
    JOIN visible_photos v ON v.id = m.photo_id AND v.model_version = r.model_version
    WHERE r.status = 'active' AND v.owner = p_owner
    GROUP BY m.landmark_id
    ORDER BY 1, 2, count(*) DESC, 4
$$;

-- album_photos: latest definition from 0001_init.sql with the attributes of
-- 0008_album_reader.sql. Changed: a landmark album reads each photo's match from the active
-- release of that photo's model version (r.model_version = v.model_version).
CREATE OR REPLACE FUNCTION album_photos(p_owner text, p_kind text, p_album text,
                                        p_after_sort timestamptz DEFAULT NULL,
                                        p_after_id bigint DEFAULT NULL,
                                        p_limit integer DEFAULT 50)
RETURNS TABLE (photo_id bigint, bucket text, key text, sort_at timestamptz,
               gps_lat double precision, gps_lon double precision, score real)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT v.id, v.bucket, v.key, v.sort_at, v.gps_lat, v.gps_lon, s.score
    FROM visible_photos v
    JOIN LATERAL (
        SELECT a.score FROM photo_albums a
        WHERE p_kind = 'scene' AND a.photo_id = v.id AND a.rank = 1 AND a.album = p_album
        UNION ALL
        SELECT m.score FROM landmark_matches m JOIN releases r ON r.version = m.release
        WHERE p_kind = 'landmark' AND r.status = 'active' AND r.model_version = v.model_version
          AND m.photo_id = v.id AND m.landmark_id = p_album
    ) s ON true
    WHERE v.owner = p_owner
      AND (p_after_id IS NULL OR (v.sort_at, v.id) < (p_after_sort, p_after_id))
    ORDER BY v.sort_at DESC, v.id DESC
    LIMIT p_limit
$$;
