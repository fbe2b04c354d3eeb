-- Library jobs count each photo once: a photo row remembers the last job that counted it, so
-- a task delivered twice (a resumed backfill re-publishing its last page, a killed worker's
-- redelivery) is counted against its job only the first time. No foreign key: a job row may
-- be pruned without touching photos.
ALTER TABLE photos ADD COLUMN IF NOT EXISTS job_id bigint;

-- The set-based write path (workers/photo_copy.py, SIGHTLINE_WRITE_PATH=copy): a batch is
-- COPYed (binary) into the session's temporary table sightline_stage, then this function
-- writes it with one guarded upsert per round. The rules are those of sightline_write_photos
-- as 0012_storage.sql last defined it, which stays the default path, the path for single rows
-- and the fallback for a batch this statement refuses (so one bad row never sinks the batch):
-- the same columns (0009's warning, 0010's scene_trained/embedding_trained), embedding and
-- scene_probs stored as halfvec (0012), one embedding width per model version
-- (model_embeddings; the first photo of a model records it, a different width refuses the
-- batch and the fallback isolates the photo), attempts + 1, the sequencer guard
-- (sightline_not_older), a newer event keeps its row ('stale'), a written photo's scenes,
-- albums and matches replaced, album and match rows carrying owner, sort key (0011's
-- sightline_sort_at) and, for albums, the scene head's trained flag, and album summary changes
-- deferred to the end of the batch (sightline_album_defer/flush: one lock order).
-- A branch that changes sightline_write_photos must change this function alike
-- (tests/test_photo_copy.py compares the rows both leave).
-- Items for one key that repeat in a batch are applied in batch order, one round per
-- repeat, as the per-photo function would (a round is one set-based upsert).
CREATE FUNCTION sightline_write_staged()
RETURNS TABLE (idx integer, photo_id bigint, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    rounds integer;
    bad    record;
BEGIN
    PERFORM sightline_album_defer();  -- album summaries once per batch, in key order (0012)
    CREATE TEMP TABLE IF NOT EXISTS sightline_written (
        idx integer, photo_id bigint, owner text, sort_at timestamptz
    ) ON COMMIT DELETE ROWS;
    DELETE FROM sightline_written;
    UPDATE sightline_stage s SET occ = r.n
    FROM (SELECT t.idx, row_number() OVER (PARTITION BY t.bucket, t.key ORDER BY t.idx) AS n
          FROM sightline_stage t) r
    WHERE s.idx = r.idx AND r.n > 1;
    SELECT max(occ) INTO rounds FROM sightline_stage;
    FOR r IN 1..coalesce(rounds, 0) LOOP
        WITH up AS (
            INSERT INTO photos AS ph (
                owner, bucket, key, version_id, etag, size, sequencer, event_time, status,
                error, warning, attempts, taken_at, taken_at_local, gps_lat, gps_lon, width,
                height, camera, model_version, model_trained, scene_trained,
                embedding_trained, embedding, scene_probs, indoor)
            SELECT p.owner, p.bucket, p.key, p.version_id, p.etag, p.size, p.sequencer,
                   p.event_time, p.status, p.error, p.warning, 1, p.taken_at,
                   p.taken_at_local, p.gps_lat, p.gps_lon, p.width, p.height, p.camera,
                   p.model_version, p.model_trained, p.scene_trained, p.embedding_trained,
                   p.embedding::halfvec, p.scene_probs::halfvec, p.indoor
            FROM sightline_stage p WHERE p.occ = r
            ORDER BY p.bucket, p.key  -- one lock order for every batch
            ON CONFLICT (bucket, key) DO UPDATE SET
                owner = EXCLUDED.owner, version_id = EXCLUDED.version_id,
                etag = EXCLUDED.etag, size = EXCLUDED.size, sequencer = EXCLUDED.sequencer,
                event_time = EXCLUDED.event_time, status = EXCLUDED.status,
                error = EXCLUDED.error, warning = EXCLUDED.warning,
                attempts = ph.attempts + 1,
                taken_at = EXCLUDED.taken_at, taken_at_local = EXCLUDED.taken_at_local,
                gps_lat = EXCLUDED.gps_lat, gps_lon = EXCLUDED.gps_lon,
                width = EXCLUDED.width, height = EXCLUDED.height, camera = EXCLUDED.camera,
                model_version = EXCLUDED.model_version,
                model_trained = EXCLUDED.model_trained,
                scene_trained = EXCLUDED.scene_trained,
                embedding_trained = EXCLUDED.embedding_trained,
                embedding = EXCLUDED.embedding,
                scene_probs = EXCLUDED.scene_probs, indoor = EXCLUDED.indoor,
                updated_at = now()
            WHERE sightline_not_older(EXCLUDED.sequencer, EXCLUDED.event_time,
                                      ph.sequencer, ph.event_time)
            RETURNING ph.id, ph.bucket, ph.key, ph.owner,
                      sightline_sort_at(ph.taken_at, ph.taken_at_local, ph.event_time,
                                        ph.created_at) AS sort_at
        )
        INSERT INTO sightline_written (idx, photo_id, owner, sort_at)
            SELECT p.idx, up.id, up.owner, up.sort_at FROM up
            JOIN sightline_stage p ON p.bucket = up.bucket AND p.key = up.key AND p.occ = r;

        -- One embedding width per model version: the first written photo of a new model
        -- records it; any other width refuses the batch (the fallback isolates the photo).
        INSERT INTO model_embeddings (model_version, embedding_dim)
            SELECT DISTINCT ON (s.model_version) s.model_version, vector_dims(s.embedding)
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r
            WHERE s.embedding IS NOT NULL AND s.model_version IS NOT NULL
            ORDER BY s.model_version, s.idx
            ON CONFLICT (model_version) DO NOTHING;
        SELECT s.model_version, vector_dims(s.embedding) AS dims, m.embedding_dim INTO bad
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r
            JOIN model_embeddings m ON m.model_version = s.model_version
            WHERE s.embedding IS NOT NULL AND vector_dims(s.embedding) <> m.embedding_dim
            LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'embedding has % dims but model % stores %',
                bad.dims, bad.model_version, bad.embedding_dim;
        END IF;

        DELETE FROM photo_scenes t USING sightline_written w, sightline_stage s
            WHERE t.photo_id = w.photo_id AND s.idx = w.idx AND s.occ = r;
        DELETE FROM photo_albums t USING sightline_written w, sightline_stage s
            WHERE t.photo_id = w.photo_id AND s.idx = w.idx AND s.occ = r;
        DELETE FROM landmark_matches t USING sightline_written w, sightline_stage s
            WHERE t.photo_id = w.photo_id AND s.idx = w.idx AND s.occ = r;
        INSERT INTO photo_scenes (photo_id, rank, class_name, probability)
            SELECT w.photo_id, u.ord, u.name, u.p
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r,
                 unnest(s.scene_names, s.scene_ps) WITH ORDINALITY AS u(name, p, ord);
        INSERT INTO photo_albums (photo_id, rank, album, score, owner, sort_at, trained)
            SELECT w.photo_id, u.ord, u.name, u.p, w.owner, w.sort_at,
                   coalesce(s.scene_trained, s.model_trained, false)
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r,
                 unnest(s.album_names, s.album_scores) WITH ORDINALITY AS u(name, p, ord);
        INSERT INTO landmark_matches (release, photo_id, landmark_id, score, owner, sort_at)
            SELECT u.rel, w.photo_id, u.lid, u.p, w.owner, w.sort_at
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r,
                 unnest(s.match_releases, s.match_ids, s.match_scores) AS u(rel, lid, p);
    END LOOP;
    PERFORM sightline_album_flush();

    RETURN QUERY
        SELECT s.idx, w.photo_id,
               CASE WHEN w.photo_id IS NULL THEN 'stale' ELSE s.status END
        FROM sightline_stage s LEFT JOIN sightline_written w ON w.idx = s.idx
        ORDER BY s.idx;
END
$$;
