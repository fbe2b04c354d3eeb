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

-- "The photo's model version" below: photos.model_version; a photo with none recorded (rows
-- written without one) is read through whichever active release holds its matches.
--
-- A photo re-tagged by another model keeps no match in its old model's releases.
-- sightline_write_photos already deletes a rewritten photo's matches; this holds it for any
-- other writer too, so each release's album_summaries rows (0012) count only photos of the
-- release's own model version, and summing the active releases' rows is exact.
CREATE FUNCTION sightline_photo_model_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM landmark_matches m USING releases r
    WHERE m.photo_id = NEW.id AND r.version = m.release
      AND r.model_version <> NEW.model_version;
    RETURN NULL;
END
$$;
CREATE TRIGGER photos_model_changed AFTER UPDATE OF model_version ON photos
    FOR EACH ROW WHEN (NEW.model_version IS NOT NULL
                       AND OLD.model_version IS DISTINCT FROM NEW.model_version)
    EXECUTE FUNCTION sightline_photo_model_changed();
-- Matches left from before (none, if every write went through sightline_write_photos).
DELETE FROM landmark_matches m USING releases r, photos p
WHERE r.version = m.release AND p.id = m.photo_id
  AND p.model_version <> r.model_version;

-- album_membership: latest definition from 0012_storage.sql (0011's rule). Changed: a match
-- counts only through the active release of the photo's own model version
-- (coalesce(v.model_version, r.model_version) = r.model_version), and an owner's landmark
-- add names that release, else the newest activated one (the subquery returned more than
-- one row once two models had active releases).
CREATE OR REPLACE VIEW album_membership AS
    SELECT v.owner, 'scene'::text AS kind, a.album AS label, v.id AS photo_id, a.score,
           v.sort_at, NULL::text AS release,
           coalesce(v.scene_trained, v.model_trained) AS model_trained,  -- the head that filed it
           false AS added_by_owner
    FROM visible_photos v JOIN photo_albums a ON a.photo_id = v.id
    WHERE NOT EXISTS (SELECT FROM photo_corrections c
                      WHERE c.owner = v.owner AND c.photo_id = v.id
                        AND c.kind = 'scene' AND c.label = a.album)
    UNION ALL
    SELECT v.owner, 'landmark', m.landmark_id, v.id, m.score, v.sort_at, r.version,
           coalesce(v.embedding_trained, v.model_trained), false
    FROM releases r
    JOIN landmark_matches m ON m.release = r.version
    JOIN visible_photos v ON v.id = m.photo_id
                         AND coalesce(v.model_version, r.model_version) = r.model_version
    WHERE r.status = 'active'
      AND NOT EXISTS (SELECT FROM photo_corrections c
                      WHERE c.owner = v.owner AND c.photo_id = v.id
                        AND c.kind = 'landmark' AND c.label = m.landmark_id)
    UNION ALL
    SELECT v.owner, c.kind, c.label, v.id, NULL::real, v.sort_at,
           CASE WHEN c.kind = 'landmark'
                THEN (SELECT r.version FROM releases r WHERE r.status = 'active'
                      ORDER BY (r.model_version = v.model_version) DESC NULLS LAST,
                               r.activated_at DESC NULLS LAST, r.version DESC
                      LIMIT 1) END,
           CASE WHEN c.kind = 'scene' THEN coalesce(v.scene_trained, v.model_trained)
                ELSE coalesce(v.embedding_trained, v.model_trained) END, true
    FROM photo_corrections c JOIN visible_photos v ON v.id = c.photo_id AND v.owner = c.owner
    WHERE c.verdict = 'add';

-- landmark_albums: latest definition from 0012_storage.sql. Changed: the summaries of every
-- active release (one per model version; each counts only its own model's photos, see the
-- trigger above) plus the owner's adds (release ''), summed per landmark id. Country, city
-- and name come from the newest activated active release that has the landmark, and the
-- `release` column names it (the locale overload of 0011 reads names through it), else the
-- newest activated active release.
CREATE OR REPLACE FUNCTION landmark_albums(p_owner text)
RETURNS TABLE (country text, city text, landmark_id text, name text, photos bigint,
               cover_photo_id bigint, release text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH active AS (SELECT r.version, r.activated_at FROM releases r WHERE r.status = 'active'),
    s AS (
        SELECT s.album, sum(s.photos)::bigint AS photos,
               (array_agg(s.cover_photo_id ORDER BY s.cover_sort_at DESC NULLS LAST,
                          s.cover_photo_id DESC NULLS LAST))[1] AS cover_photo_id
        FROM album_summaries s
        WHERE s.owner = p_owner AND s.kind = 'landmark'
          AND (s.release = '' OR s.release IN (SELECT version FROM active))
        GROUP BY s.album
        HAVING sum(s.photos) > 0)
    SELECT coalesce(l.country, ''), coalesce(l.city, ''), s.album, coalesce(l.name, s.album),
           s.photos, s.cover_photo_id,
           coalesce(l.release, (SELECT a.version FROM active a
                                ORDER BY a.activated_at DESC NULLS LAST, a.version DESC
                                LIMIT 1))
    FROM s LEFT JOIN LATERAL (
        SELECT l.country, l.city, l.name, l.release
        FROM landmarks l JOIN active a ON a.version = l.release
        WHERE l.landmark_id = s.album
        ORDER BY a.activated_at DESC NULLS LAST, a.version DESC
        LIMIT 1) l ON true
    ORDER BY 1, 2, s.photos DESC, 4
$$;

-- album_photos: latest definition from 0012_storage.sql. Changed (landmark branch only): one
-- index range scan per active release (one per model version) instead of one for the single
-- active release, each photo kept only when its model version is the release's.
CREATE OR REPLACE FUNCTION album_photos(p_owner text, p_kind text, p_album text,
                                        p_after_sort timestamptz DEFAULT NULL,
                                        p_after_id bigint DEFAULT NULL,
                                        p_limit integer DEFAULT 50)
RETURNS TABLE (photo_id bigint, bucket text, key text, sort_at timestamptz,
               gps_lat double precision, gps_lon double precision, score real)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    after_sort timestamptz := coalesce(p_after_sort, 'infinity');
    after_id   bigint := CASE WHEN p_after_id IS NULL THEN 9223372036854775807 ELSE p_after_id END;
BEGIN
    -- Merged with 0011: every rank, less the rows the owner corrected, merged with the
    -- owner's adds (few: a range of photo_corrections_added), each side cut at p_limit.
    IF p_kind = 'scene' THEN
        RETURN QUERY
            SELECT v.id, v.bucket, v.key, x.sort_at, v.gps_lat, v.gps_lon, x.score
            FROM (
                (SELECT a.photo_id, a.sort_at, a.score FROM photo_albums a
                 WHERE a.owner = p_owner AND a.album = p_album
                   AND (a.sort_at, a.photo_id) < (after_sort, after_id)
                   AND NOT EXISTS (SELECT FROM photo_corrections c
                                   WHERE c.owner = a.owner AND c.photo_id = a.photo_id
                                     AND c.kind = 'scene' AND c.label = a.album)
                 ORDER BY a.sort_at DESC, a.photo_id DESC LIMIT p_limit)
                UNION ALL
                (SELECT a.photo_id, a.sort_at, NULL::real FROM sightline_album_adds(
                     p_owner, 'scene', p_album, after_sort, after_id, p_limit) a)
            ) x JOIN photos v ON v.id = x.photo_id
            WHERE v.status = 'tagged'
            ORDER BY x.sort_at DESC, x.photo_id DESC
            LIMIT p_limit;
    ELSIF p_kind = 'landmark' THEN
        RETURN QUERY
            SELECT v.id, v.bucket, v.key, x.sort_at, v.gps_lat, v.gps_lon, x.score
            FROM (
                (SELECT m.photo_id, m.sort_at, m.score, r.model_version
                 FROM releases r CROSS JOIN LATERAL (
                     SELECT m.photo_id, m.sort_at, m.score FROM landmark_matches m
                     WHERE m.owner = p_owner AND m.release = r.version
                       AND m.landmark_id = p_album
                       AND (m.sort_at, m.photo_id) < (after_sort, after_id)
                       AND NOT EXISTS (SELECT FROM photo_corrections c
                                       WHERE c.owner = m.owner AND c.photo_id = m.photo_id
                                         AND c.kind = 'landmark' AND c.label = m.landmark_id)
                     ORDER BY m.sort_at DESC, m.photo_id DESC LIMIT p_limit) m
                 WHERE r.status = 'active')
                UNION ALL
                (SELECT a.photo_id, a.sort_at, NULL::real, NULL::text FROM sightline_album_adds(
                     p_owner, 'landmark', p_album, after_sort, after_id, p_limit) a)
            ) x JOIN photos v ON v.id = x.photo_id
            WHERE v.status = 'tagged'
              AND (x.model_version IS NULL
                   OR coalesce(v.model_version, x.model_version) = x.model_version)
            ORDER BY x.sort_at DESC, x.photo_id DESC
            LIMIT p_limit;
    END IF;
END
$$;
