-- 0024: the staged write skips what a batch of new photos does not need (issue 13).
--
-- sightline_write_staged() (0021) ran every statement for every batch. For a batch of new
-- photos (a backfill, most uploads) three of them had nothing to do and still cost their
-- planning and their statement triggers: the deletes of the photos' old scene, album and
-- landmark rows (a new photo has none) and the insert of landmark matches when no photo
-- has one. Changed from 0021 (each marked "changed (0024)"):
--  * the upsert returns each photo's attempts; an update now counts at least 2
--    (greatest(attempts, 1) + 1: a row some other writer inserted with 0 still reads as
--    rewritten), so attempts = 1 is a row this statement inserted. The three deletes run
--    only when a photo of the round was rewritten;
--  * landmark matches are inserted only when a staged photo has one.
-- sightline_write_photos (the per-photo path) is unchanged: it already looks the photo up.

CREATE OR REPLACE FUNCTION sightline_write_staged()
RETURNS TABLE (idx integer, photo_id bigint, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    rounds    integer;
    rewritten boolean;
    bad       record;
    o      record;
BEGIN
    PERFORM sightline_album_defer();
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
        -- changed: objects whose owner changed (see sightline_write_photos): the stored row
        -- goes when this event is not older, else the item sits out every round ('stale').
        -- OFFSET 0 keeps the lookup a probe of (bucket, key) per item, never a join over
        -- every photo.
        FOR o IN SELECT p.idx, x.id, x.owner,
                        sightline_not_older(p.sequencer, p.event_time, x.sequencer,
                                            x.event_time) AS not_older
                 FROM sightline_stage p CROSS JOIN LATERAL (
                     SELECT ph.id, ph.owner, ph.sequencer, ph.event_time FROM photos ph
                     WHERE ph.bucket = p.bucket AND ph.key = p.key AND ph.owner <> p.owner
                     OFFSET 0) x
                 WHERE p.occ = r LOOP
            IF o.not_older THEN
                DELETE FROM photos ph WHERE ph.id = o.id AND ph.owner = o.owner;
            ELSE
                UPDATE sightline_stage t SET occ = 0 WHERE t.idx = o.idx;
            END IF;
        END LOOP;
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
            ON CONFLICT (bucket, key, owner) DO UPDATE SET  -- changed: owner in the key
                version_id = EXCLUDED.version_id,
                etag = EXCLUDED.etag, size = EXCLUDED.size, sequencer = EXCLUDED.sequencer,
                event_time = EXCLUDED.event_time, status = EXCLUDED.status,
                error = EXCLUDED.error, warning = EXCLUDED.warning,
                -- changed (0024): a rewrite counts at least 2, so 1 means a new row
                attempts = greatest(ph.attempts, 1) + 1,
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
                                        ph.created_at) AS sort_at,
                      ph.attempts
        ), written AS (
            INSERT INTO sightline_written (idx, photo_id, owner, sort_at)
                SELECT p.idx, up.id, up.owner, up.sort_at FROM up
                JOIN sightline_stage p ON p.bucket = up.bucket AND p.key = up.key
                                      AND p.occ = r
        )
        -- changed (0024): whether any photo was there before (a new one has no tags to
        -- delete; a partitioned table has no xmax to tell, its attempts do)
        SELECT coalesce(bool_or(up.attempts > 1), false) INTO rewritten FROM up;

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

        -- changed (0024): only when a photo was rewritten
        IF rewritten THEN
            DELETE FROM photo_scenes t USING sightline_written w, sightline_stage s
                WHERE t.owner = w.owner AND t.photo_id = w.photo_id AND s.idx = w.idx
                  AND s.occ = r;
            DELETE FROM photo_albums t USING sightline_written w, sightline_stage s
                WHERE t.owner = w.owner AND t.photo_id = w.photo_id AND s.idx = w.idx
                  AND s.occ = r;
            DELETE FROM landmark_matches t USING sightline_written w, sightline_stage s
                WHERE t.owner = w.owner AND t.photo_id = w.photo_id AND s.idx = w.idx
                  AND s.occ = r;
        END IF;
        -- changed (0021): the class by its id, the round's new names registered first
        PERFORM sightline_register_scene_classes(ARRAY(
            SELECT u.name
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r,
                 unnest(s.scene_names) AS u(name)));
        INSERT INTO photo_scenes (photo_id, probability, rank, class_id, owner)
            SELECT w.photo_id, u.p, u.ord, c.id, w.owner
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r,
                 unnest(s.scene_names, s.scene_ps) WITH ORDINALITY AS u(name, p, ord)
                 LEFT JOIN scene_classes c ON c.name = u.name;
        INSERT INTO photo_albums (photo_id, rank, album, score, owner, sort_at, trained)
            SELECT w.photo_id, u.ord, u.name, u.p, w.owner, w.sort_at,
                   coalesce(s.scene_trained, s.model_trained, false)
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r,
                 unnest(s.album_names, s.album_scores) WITH ORDINALITY AS u(name, p, ord);
        -- changed (0024): only when a photo has matches (its statement triggers cost
        -- even with no row)
        IF EXISTS (SELECT FROM sightline_stage s
                   WHERE s.occ = r AND cardinality(s.match_ids) > 0) THEN
            INSERT INTO landmark_matches (release, photo_id, landmark_id, score, owner,
                                          sort_at)
                SELECT u.rel, w.photo_id, u.lid, u.p, w.owner, w.sort_at
                FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx
                                                               AND s.occ = r,
                     unnest(s.match_releases, s.match_ids, s.match_scores) AS u(rel, lid, p);
        END IF;
    END LOOP;
    PERFORM sightline_album_flush();

    RETURN QUERY
        SELECT s.idx, w.photo_id,
               CASE WHEN w.photo_id IS NULL THEN 'stale' ELSE s.status END
        FROM sightline_stage s LEFT JOIN sightline_written w ON w.idx = s.idx
        ORDER BY s.idx;
END
$$;
