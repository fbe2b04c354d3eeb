-- 0025: a photo's top-5 scenes in one row (bytes per photo, issue 16; write cost, issue 13).
--
-- A photo had five photo_scenes rows, written and deleted only as a set (0020): 52 bytes a
-- row with its line pointer, a tuple header each, and an index entry and a foreign-key check
-- each. `sightline bench writes --json` measured them at about 320 bytes a photo (heap 261,
-- index 59) and the key checks at 80 us a photo of the staged upsert (docs/library.md).
-- - photo_scene_sets: one row a photo, the class ids and probabilities as arrays in rank
--   order, keyed (photo_id, owner) like the other photo tables (owner in the key, issue 16's
--   Citus rule), hash-partitioned by owner with photo_scenes' bounds, each partition keyed to
--   the photos partition with the same bounds, ON DELETE CASCADE (0019). Checks keep the
--   two arrays non-empty lists from 1, of one length and without NULLs (what the NOT NULL
--   columns of photo_scenes held; a photo without scenes has no row, as it had no rows).
-- - photo_scenes is now a view with the same columns, in the same order, and the same rows
--   (rank is the position, 1 to 5): plain SQL reads it as before, with the privileges
--   granted on the table (and on photo_scene_names) granted again on the views; writes go
--   through the write functions, as before (the view takes no INSERT or DELETE).
--   photo_scene_names is defined on it as before. The rows stay (issue 16 keeps them).
-- - A view or materialized view of the deployment's own on photo_scenes or
--   photo_scene_names stops the upgrade with its name (drop it, upgrade, create it again),
--   and so do row security or column privileges on them (a view cannot carry them).
-- - The two write paths insert one row a photo (marked "changed (0025)"; the other "changed"
--   notes are those of the migrations they come from: 0021 for sightline_write_photos, 0024
--   for sightline_write_staged). sightline_write_photos no longer turns a deadlock, a
--   serialization failure, a lock timeout or a table, column or function gone from under it
--   (a schema upgraded while the call ran) into that photo's refusal: those fail the call,
--   and the worker retries the batch (before, such a photo was refused for good).
-- - Existing rows move in rank order (ranks are 1..5 as the writers numbered them); the
--   table is dropped after.
-- - Stop the workers while upgrading to 0025 (or re-run what they refused meanwhile with
--   `sightline backfill`): a worker from before 0025 runs the old write functions, and a
--   batch in flight when this migration commits is refused ("cannot delete from view").
--   From 0025 on workers take the schema lock shared in each write transaction
--   (workers.migrate.hold_schema), so an upgrade waits for the writes in flight and holds
--   new ones until it commits.

DO $$
DECLARE
    users text;
BEGIN
    SELECT string_agg(DISTINCT v.oid::regclass::text, ', ') INTO users
      FROM pg_depend d
      JOIN pg_rewrite r ON r.oid = d.objid
      JOIN pg_class v ON v.oid = r.ev_class
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid IN ('photo_scenes'::regclass, 'photo_scene_names'::regclass)
       AND v.oid NOT IN ('photo_scenes'::regclass, 'photo_scene_names'::regclass);
    IF users IS NOT NULL THEN
        RAISE EXCEPTION '0025 replaces the table photo_scenes by a view of the same rows, and % '
                        'read it: drop them, upgrade, then create them again', users;
    END IF;
    -- what a view cannot carry over: row security and column privileges on the table
    IF EXISTS (SELECT FROM pg_class WHERE oid = 'photo_scenes'::regclass
                                      AND (relrowsecurity OR relforcerowsecurity))
       OR EXISTS (SELECT FROM pg_policy WHERE polrelid = 'photo_scenes'::regclass)
       OR EXISTS (SELECT FROM pg_attribute WHERE attrelid IN ('photo_scenes'::regclass,
                                                              'photo_scene_names'::regclass)
                                             AND attacl IS NOT NULL) THEN
        RAISE EXCEPTION '0025 replaces the table photo_scenes by a view, which cannot carry its '
                        'row security policies or column privileges: remove them, upgrade, '
                        'then grant on the views photo_scenes and photo_scene_names instead';
    END IF;
END
$$;

-- The privileges granted on the table and on photo_scene_names, granted again on the views.
CREATE TEMP TABLE sightline_0025_grants ON COMMIT DROP AS
    SELECT c.relname::text AS relname, a.grantee, a.privilege_type, a.is_grantable
    FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid IN ('photo_scenes'::regclass, 'photo_scene_names'::regclass)
      AND a.grantee <> c.relowner;

DROP VIEW photo_scene_names;

CREATE TABLE photo_scene_sets (
    photo_id      bigint     NOT NULL,
    owner         text       NOT NULL,
    class_ids     smallint[] NOT NULL,
    probabilities real[]     NOT NULL,
    PRIMARY KEY (photo_id, owner),
    -- what photo_scenes' NOT NULL columns held, each named for the error it gives; the
    -- NULL checks only look at lists (array_position refuses other arrays with an error
    -- of its own), which the list check requires
    CONSTRAINT photo_scene_sets_lists CHECK (
        cardinality(class_ids) > 0
        AND coalesce(array_ndims(class_ids), 0) = 1 AND array_lower(class_ids, 1) = 1
        AND coalesce(array_ndims(probabilities), 0) = 1 AND array_lower(probabilities, 1) = 1),
    CONSTRAINT photo_scene_sets_no_null_class_id CHECK (
        CASE WHEN array_ndims(class_ids) = 1 THEN array_position(class_ids, NULL) IS NULL END),
    CONSTRAINT photo_scene_sets_no_null_probability CHECK (
        CASE WHEN array_ndims(probabilities) = 1
             THEN array_position(probabilities, NULL) IS NULL END),
    CONSTRAINT photo_scene_sets_one_probability_a_class CHECK (
        cardinality(class_ids) = cardinality(probabilities))
) PARTITION BY HASH (owner);

DO $$
DECLARE
    part   record;
    name   text;
    target text;
BEGIN
    FOR part IN
        SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'photo_scenes'::regclass
    LOOP
        -- photo_scenes_pN -> photo_scene_sets_pN (0017's names)
        name := 'photo_scene_sets_' || substring(part.name FROM '_(p[0-9]+)$');
        EXECUTE format('CREATE TABLE %I PARTITION OF photo_scene_sets %s', name, part.bound);
        -- the key's partition index named as 0017 names them (parent index _pN)
        EXECUTE format('ALTER INDEX %I RENAME TO %I', name || '_pkey',
                       'photo_scene_sets_pkey_' || substring(part.name FROM '_(p[0-9]+)$'));
        SELECT c.oid::regclass::text INTO target
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'photos'::regclass
           AND pg_get_expr(c.relpartbound, c.oid) = part.bound;
        IF target IS NULL THEN
            RAISE EXCEPTION '0025: no photos partition %', part.bound;
        END IF;
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (photo_id, owner) '
                       'REFERENCES %s (id, owner) ON DELETE CASCADE',
                       name, name || '_photo_fkey', target);
    END LOOP;
END
$$;

INSERT INTO photo_scene_sets (photo_id, owner, class_ids, probabilities)
    SELECT photo_id, owner, array_agg(class_id ORDER BY rank),
           array_agg(probability ORDER BY rank)
    FROM photo_scenes GROUP BY photo_id, owner;

DROP TABLE photo_scenes;

CREATE VIEW photo_scenes AS
    SELECT s.photo_id, u.probability, u.rank::smallint AS rank, u.class_id, s.owner
    FROM photo_scene_sets s,
         unnest(s.class_ids, s.probabilities) WITH ORDINALITY AS u(class_id, probability, rank);

CREATE VIEW photo_scene_names AS
    SELECT s.photo_id, s.owner, s.rank, c.name AS class_name, s.probability
    FROM photo_scenes s JOIN scene_classes c ON c.id = s.class_id;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT * FROM sightline_0025_grants LOOP
        EXECUTE format('GRANT %s ON %I TO %s%s', g.privilege_type, g.relname,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                            ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION sightline_write_photos(batch jsonb)
RETURNS TABLE (idx integer, photo_id bigint, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p      jsonb;
    i      integer := 0;
    pid    bigint;
    powner text;
    psort  timestamptz;
    pdim   integer;
    want   integer;
    pnew   boolean;
    o      record;
    moved  boolean;
BEGIN
    PERFORM sightline_album_defer();
    FOR p IN SELECT value FROM jsonb_array_elements(batch) LOOP
        BEGIN
            pid := NULL;
            -- changed: the object under another owner (the key's owner changed): gone when
            -- this event is not older than it; when it is newer, this event is stale. One
            -- index probe per partition, and usually no row.
            moved := false;
            FOR o IN SELECT ph.id, ph.owner, ph.sequencer, ph.event_time FROM photos ph
                     WHERE ph.bucket = p->>'bucket' AND ph.key = p->>'key'
                       AND ph.owner <> p->>'owner' LOOP
                IF sightline_not_older(p->>'sequencer', (p->>'event_time')::timestamptz,
                                       o.sequencer, o.event_time) THEN
                    DELETE FROM photos ph WHERE ph.id = o.id AND ph.owner = o.owner;
                ELSE
                    moved := true;  -- a newer event stored it under its other owner
                END IF;
            END LOOP;
            IF moved THEN
                idx := i; photo_id := NULL; outcome := 'stale';
                RETURN NEXT;
                i := i + 1;
                CONTINUE;
            END IF;
            pnew := NOT EXISTS (SELECT FROM photos o WHERE o.bucket = p->>'bucket'
                                AND o.key = p->>'key' AND o.owner = p->>'owner');
            INSERT INTO photos AS ph (
                owner, bucket, key, version_id, etag, size, sequencer, event_time, status,
                error, warning, attempts, taken_at, taken_at_local, gps_lat, gps_lon, width,
                height, camera, model_version, model_trained, scene_trained, embedding_trained,
                embedding, scene_probs, indoor)
            VALUES (
                p->>'owner', p->>'bucket', p->>'key', p->>'version_id', p->>'etag',
                (p->>'size')::bigint, p->>'sequencer', (p->>'event_time')::timestamptz,
                p->>'status', p->>'error', p->>'warning',
                1, (p->>'taken_at')::timestamptz,
                (p->>'taken_at_local')::timestamp, (p->>'gps_lat')::float8,
                (p->>'gps_lon')::float8, (p->>'width')::integer, (p->>'height')::integer,
                p->>'camera', p->>'model_version', (p->>'model_trained')::boolean,
                (p->>'scene_trained')::boolean, (p->>'embedding_trained')::boolean,
                (p->>'embedding')::halfvec,
                CASE WHEN jsonb_typeof(p->'scene_probs') = 'array'
                     THEN (p->>'scene_probs')::halfvec END,
                (p->>'indoor')::real)
            ON CONFLICT (bucket, key, owner) DO UPDATE SET  -- changed: owner in the key
                version_id = EXCLUDED.version_id,
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
            RETURNING ph.id, ph.owner,
                      sightline_sort_at(ph.taken_at, ph.taken_at_local, ph.event_time,
                                        ph.created_at),
                      vector_dims(ph.embedding),
                      -- changed: a partitioned table has no xmax to return; a row is new when
                      -- it was not there before and its attempts are this write's
                      pnew AND ph.attempts = 1
                INTO pid, powner, psort, pdim, pnew;

            IF pid IS NULL THEN
                idx := i; photo_id := NULL; outcome := 'stale';
            ELSE
                IF pdim IS NOT NULL AND p->>'model_version' IS NOT NULL THEN
                    SELECT embedding_dim INTO want FROM model_embeddings
                    WHERE model_version = p->>'model_version';
                    IF want IS NULL THEN
                        INSERT INTO model_embeddings VALUES (p->>'model_version', pdim)
                        ON CONFLICT (model_version) DO NOTHING;
                        SELECT embedding_dim INTO want FROM model_embeddings
                        WHERE model_version = p->>'model_version';
                    END IF;
                    IF want <> pdim THEN
                        RAISE EXCEPTION 'embedding has % dims but model % stores %',
                            pdim, p->>'model_version', want;
                    END IF;
                END IF;
                IF NOT pnew THEN  -- changed: by (owner, photo id)
                    -- changed (0025): the photo's scene set
                    DELETE FROM photo_scene_sets s WHERE s.owner = powner AND s.photo_id = pid;
                    DELETE FROM photo_albums a WHERE a.owner = powner AND a.photo_id = pid;
                    DELETE FROM landmark_matches m WHERE m.owner = powner AND m.photo_id = pid;
                END IF;
                -- changed (0021): the class by its id, a new name registered first
                PERFORM sightline_register_scene_classes(ARRAY(
                    SELECT s.e->>0 FROM jsonb_array_elements(coalesce(p->'scenes', '[]')) AS s(e)));
                -- changed (0025): one row, the classes and probabilities in rank order (a
                -- photo without scenes has none; a class or probability missing from an
                -- entry is a NULL the table's check refuses, for this photo alone)
                INSERT INTO photo_scene_sets (photo_id, owner, class_ids, probabilities)
                    SELECT pid, powner, array_agg(c.id ORDER BY s.ord),
                           array_agg((s.e->>1)::real ORDER BY s.ord)
                    FROM jsonb_array_elements(coalesce(p->'scenes', '[]')) WITH ORDINALITY
                         AS s(e, ord)
                    LEFT JOIN scene_classes c ON c.name = s.e->>0
                    HAVING count(*) > 0;
                IF jsonb_typeof(p->'albums') = 'array' AND jsonb_array_length(p->'albums') > 0
                THEN
                    INSERT INTO photo_albums (photo_id, rank, album, score, owner, sort_at,
                                              trained)
                        SELECT pid, a.ord, a.e->>0, (a.e->>1)::real, powner, psort,
                               coalesce((p->>'scene_trained')::boolean,
                                        (p->>'model_trained')::boolean, false)
                        FROM jsonb_array_elements(p->'albums') WITH ORDINALITY AS a(e, ord);
                END IF;
                IF jsonb_typeof(p->'matches') = 'array' AND jsonb_array_length(p->'matches') > 0
                THEN
                    INSERT INTO landmark_matches (release, photo_id, landmark_id, score, owner,
                                                  sort_at)
                        SELECT m.e->>0, pid, m.e->>1, (m.e->>2)::real, powner, psort
                        FROM jsonb_array_elements(p->'matches') AS m(e);
                END IF;
                idx := i; photo_id := pid; outcome := p->>'status';
            END IF;
        -- changed (0025): not this photo's fault, so not its refusal: the call fails and
        -- the worker retries the batch
        EXCEPTION WHEN deadlock_detected OR serialization_failure OR lock_not_available
                       OR undefined_table OR undefined_column OR wrong_object_type
                       OR undefined_function THEN
            RAISE;
        WHEN OTHERS THEN
            idx := i; photo_id := NULL; outcome := 'error: ' || SQLERRM;
        END;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
    PERFORM sightline_album_flush();
END
$$;

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
            -- changed (0025): the photos' scene sets
            DELETE FROM photo_scene_sets t USING sightline_written w, sightline_stage s
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
        -- changed (0025): one row a photo, the classes and probabilities in rank order
        -- (lists of unequal length pad with NULL, which the table's check refuses: the
        -- batch then goes through the per-photo path)
        INSERT INTO photo_scene_sets (photo_id, owner, class_ids, probabilities)
            SELECT w.photo_id, w.owner, array_agg(c.id ORDER BY u.ord),
                   array_agg(u.p ORDER BY u.ord)
            FROM sightline_written w JOIN sightline_stage s ON s.idx = w.idx AND s.occ = r,
                 unnest(s.scene_names, s.scene_ps) WITH ORDINALITY AS u(name, p, ord)
                 LEFT JOIN scene_classes c ON c.name = u.name
            GROUP BY w.photo_id, w.owner;
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

ANALYZE photo_scene_sets;
