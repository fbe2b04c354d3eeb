-- Provenance per head: a photo row records whether its scene labels and its embedding came
-- from a trained head, so a real scene classifier beside an untrained embedding head files
-- real scene albums and scene_albums().untrained stays truthful per head. NULL: tagged before
-- this migration (model_trained, which covered both heads, still says what was known).
ALTER TABLE photos ADD COLUMN scene_trained boolean, ADD COLUMN embedding_trained boolean;

-- sightline_write_photos: the definition of 0009_field_faults.sql; changed only to write
-- scene_trained and embedding_trained (the batch elements' new keys of the same names).
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
                camera, model_version, model_trained, scene_trained, embedding_trained,
                embedding, scene_probs, indoor)
            VALUES (
                p->>'owner', p->>'bucket', p->>'key', p->>'version_id', p->>'etag',
                (p->>'size')::bigint, p->>'sequencer', (p->>'event_time')::timestamptz,
                p->>'status', p->>'error', p->>'warning',  -- 0009: warning
                1, (p->>'taken_at')::timestamptz,
                (p->>'taken_at_local')::timestamp, (p->>'gps_lat')::float8,
                (p->>'gps_lon')::float8, (p->>'width')::integer, (p->>'height')::integer,
                p->>'camera', p->>'model_version', (p->>'model_trained')::boolean,
                (p->>'scene_trained')::boolean, (p->>'embedding_trained')::boolean,
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
                model_trained = EXCLUDED.model_trained,
                scene_trained = EXCLUDED.scene_trained,
                embedding_trained = EXCLUDED.embedding_trained, embedding = EXCLUDED.embedding,
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

-- scene_albums: the definition of 0001_init.sql with the attributes of 0008_album_reader.sql;
-- changed only so `untrained` reads the scene head's provenance (model_trained for rows
-- written before this migration). visible_photos fixed its columns when it was made, so the
-- new column is read from photos itself.
CREATE OR REPLACE FUNCTION scene_albums(p_owner text)
RETURNS TABLE (album text, photos bigint, cover_photo_id bigint, untrained boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT a.album, count(*),
           (array_agg(v.id ORDER BY v.sort_at DESC, v.id DESC))[1],
           bool_or(NOT coalesce(ph.scene_trained, v.model_trained, false))
    FROM visible_photos v JOIN photo_albums a ON a.photo_id = v.id AND a.rank = 1
    JOIN photos ph ON ph.id = v.id
    WHERE v.owner = p_owner
    GROUP BY a.album
    ORDER BY count(*) DESC, a.album
$$;
