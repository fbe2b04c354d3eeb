-- 0009 (issue 12, field faults):
-- * photos.warning: a non-fatal note on a tagged photo, e.g. an EXIF block that is present
--   but cannot be parsed (so "no GPS" is never silent).
-- * status 'ignored': an object under an opaque key (no extension) whose bytes are not an
--   image; it is not a failure and is never retried.
-- * sightline_write_photos: copied from 0005_write_batch.sql; the only change is that it
--   writes the element's 'warning' into photos.warning (marked "0009" below).
ALTER TABLE photos ADD COLUMN warning text;
ALTER TABLE photos DROP CONSTRAINT photos_status_check;
ALTER TABLE photos ADD CONSTRAINT photos_status_check
    CHECK (status IN ('pending', 'tagged', 'failed', 'gone', 'deleted', 'ignored'));

CREATE OR REPLACE FUNCTION sightline_write_photos(batch jsonb)
RETURNS TABLE (idx integer, photo_id bigint, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p   jsonb;
    i   integer := 0;
    pid bigint;
BEGIN
    FOR p IN SELECT value FROM jsonb_array_elements(batch) LOOP
        BEGIN
            pid := NULL;
            INSERT INTO photos AS ph (
                owner, bucket, key, version_id, etag, size, sequencer, event_time, status,
                error, warning, attempts, taken_at, taken_at_local, gps_lat, gps_lon, width,
                height,  -- 0009: warning
                camera, model_version, model_trained, embedding, scene_probs, indoor)
            VALUES (
                p->>'owner', p->>'bucket', p->>'key', p->>'version_id', p->>'etag',
                (p->>'size')::bigint, p->>'sequencer', (p->>'event_time')::timestamptz,
                p->>'status', p->>'error', p->>'warning',  -- 0009: warning
                1, (p->>'taken_at')::timestamptz,
                (p->>'taken_at_local')::timestamp, (p->>'gps_lat')::float8,
                (p->>'gps_lon')::float8, (p->>'width')::integer, (p->>'height')::integer,
                p->>'camera', p->>'model_version', (p->>'model_trained')::boolean,
                (p->>'embedding')::vector,
                CASE WHEN jsonb_typeof(p->'scene_probs') = 'array' THEN
                    ARRAY(SELECT jsonb_array_elements_text(p->'scene_probs')::real) END,
                (p->>'indoor')::real)
            ON CONFLICT (bucket, key) DO UPDATE SET
                owner = EXCLUDED.owner, version_id = EXCLUDED.version_id,
                etag = EXCLUDED.etag, size = EXCLUDED.size, sequencer = EXCLUDED.sequencer,
                event_time = EXCLUDED.event_time, status = EXCLUDED.status,
                error = EXCLUDED.error, warning = EXCLUDED.warning,  -- 0009: warning
                attempts = ph.attempts + 1,
                taken_at = EXCLUDED.taken_at, taken_at_local = EXCLUDED.taken_at_local,
                gps_lat = EXCLUDED.gps_lat, gps_lon = EXCLUDED.gps_lon,
                width = EXCLUDED.width, height = EXCLUDED.height, camera = EXCLUDED.camera,
                model_version = EXCLUDED.model_version,
                model_trained = EXCLUDED.model_trained, embedding = EXCLUDED.embedding,
                scene_probs = EXCLUDED.scene_probs, indoor = EXCLUDED.indoor,
                updated_at = now()
            WHERE sightline_not_older(EXCLUDED.sequencer, EXCLUDED.event_time,
                                      ph.sequencer, ph.event_time)
            RETURNING ph.id INTO pid;

            IF pid IS NULL THEN
                idx := i; photo_id := NULL; outcome := 'stale';
            ELSE
                DELETE FROM photo_scenes WHERE photo_scenes.photo_id = pid;
                DELETE FROM photo_albums WHERE photo_albums.photo_id = pid;
                DELETE FROM landmark_matches WHERE landmark_matches.photo_id = pid;
                INSERT INTO photo_scenes (photo_id, rank, class_name, probability)
                    SELECT pid, s.ord, s.e->>0, (s.e->>1)::real
                    FROM jsonb_array_elements(coalesce(p->'scenes', '[]')) WITH ORDINALITY
                         AS s(e, ord);
                INSERT INTO photo_albums (photo_id, rank, album, score)
                    SELECT pid, a.ord, a.e->>0, (a.e->>1)::real
                    FROM jsonb_array_elements(coalesce(p->'albums', '[]')) WITH ORDINALITY
                         AS a(e, ord);
                INSERT INTO landmark_matches (release, photo_id, landmark_id, score)
                    SELECT m.e->>0, pid, m.e->>1, (m.e->>2)::real
                    FROM jsonb_array_elements(coalesce(p->'matches', '[]')) AS m(e);
                idx := i; photo_id := pid; outcome := p->>'status';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            idx := i; photo_id := NULL; outcome := 'error: ' || SQLERRM;
        END;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
END
$$;
