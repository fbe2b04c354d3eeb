-- 0017 (issue 16, part 4): a schema ready to be distributed by owner.
--
-- * `owner` is in every primary, unique and foreign key of the photo tables (photos,
--   photo_scenes, photo_albums, landmark_matches, photo_corrections); photo_scenes gains the
--   column. It is the LAST key column where the key had others before (photos (id, owner),
--   (bucket, key, owner); tags (photo_id, rank, owner)), so every lookup by id or by
--   (bucket, key) alone keeps an index prefix in each partition, and first where it already
--   was (photo_corrections, album_summaries). Tags reference photos by (photo_id, owner).
-- * The five tables are hash-partitioned by owner (declarative), with the same count each so
--   an owner's rows sit in partitions of the same number (partition-wise joins). The count is
--   a parameter of this migration: the setting `sightline.photo_partitions` when it runs
--   (`sightline db upgrade --partitions N`, workers.migrate.upgrade(url, partitions=N)),
--   default 8, recorded in schema_parameters ('photo_partitions').
-- * A photo's owner never changes in place (a distributed table cannot move a row between
--   shards either): an update of photos.owner is refused, and the write functions treat an
--   object whose owner changed as a delete of the old owner's row and an insert.
-- * Existing rows move: each table is rebuilt as a partitioned copy (rows, ids and the
--   photos_id_seq sequence kept), its indexes, keys, triggers and the two views recreated,
--   and every function that names a changed key or joins a photo to its tags redefined.
--   Summaries and status counters do not change (the same rows are copied).

CREATE TABLE schema_parameters (
    name  text PRIMARY KEY,
    value text NOT NULL
);
DO $$
DECLARE
    raw text := coalesce(nullif(current_setting('sightline.photo_partitions', true), ''), '8');
BEGIN
    IF raw !~ '^[0-9]{1,4}$' OR raw::int NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'sightline.photo_partitions must be a whole number from 1 to 128, not %',
            raw USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO schema_parameters VALUES ('photo_partitions', raw::int::text);
END
$$;

-- ------------------------------------------------------------ 1. the partitioned copies
DROP VIEW album_membership;
DROP VIEW visible_photos;

-- Same columns in the same order (positional inserts and p.* keep working), defaults (the id
-- sequence), CHECK constraints, NOT NULLs and storage (embedding PLAIN); no keys or indexes
-- yet: they are built once, after the rows are in.
CREATE TABLE photos_0017 (LIKE photos INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                          INCLUDING STORAGE INCLUDING COMPRESSION)
    PARTITION BY HASH (owner);
CREATE TABLE photo_scenes_0017 (LIKE photo_scenes INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                INCLUDING STORAGE, owner text NOT NULL)
    PARTITION BY HASH (owner);
CREATE TABLE photo_albums_0017 (LIKE photo_albums INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                INCLUDING STORAGE)
    PARTITION BY HASH (owner);
CREATE TABLE landmark_matches_0017 (LIKE landmark_matches INCLUDING DEFAULTS
                                    INCLUDING CONSTRAINTS INCLUDING STORAGE)
    PARTITION BY HASH (owner);
CREATE TABLE photo_corrections_0017 (LIKE photo_corrections INCLUDING DEFAULTS
                                     INCLUDING CONSTRAINTS INCLUDING STORAGE)
    PARTITION BY HASH (owner);

DO $$
DECLARE
    n integer := (SELECT value::int FROM schema_parameters WHERE name = 'photo_partitions');
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['photos', 'photo_scenes', 'photo_albums', 'landmark_matches',
                             'photo_corrections'] LOOP
        FOR i IN 0 .. n - 1 LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS %s, '
                           'REMAINDER %s)', t || '_p' || i, t || '_0017', n, i);
        END LOOP;
    END LOOP;
END
$$;

-- The copies (no triggers on the new tables yet: summaries and counters are already right).
INSERT INTO photos_0017 SELECT * FROM photos;
INSERT INTO photo_scenes_0017 SELECT s.*, p.owner FROM photo_scenes s JOIN photos p ON p.id = s.photo_id;
INSERT INTO photo_albums_0017 SELECT * FROM photo_albums;
INSERT INTO landmark_matches_0017 SELECT * FROM landmark_matches;
INSERT INTO photo_corrections_0017 SELECT * FROM photo_corrections;

-- The sequence outlives the old table (it is owned by photos.id until now).
ALTER SEQUENCE photos_id_seq OWNED BY NONE;
DROP TABLE photo_scenes, photo_albums, landmark_matches, photo_corrections, photos;
ALTER TABLE photos_0017 RENAME TO photos;
ALTER TABLE photo_scenes_0017 RENAME TO photo_scenes;
ALTER TABLE photo_albums_0017 RENAME TO photo_albums;
ALTER TABLE landmark_matches_0017 RENAME TO landmark_matches;
ALTER TABLE photo_corrections_0017 RENAME TO photo_corrections;
ALTER SEQUENCE photos_id_seq OWNED BY photos.id;

-- ------------------------------------------------------------ 2. keys and indexes
ALTER TABLE photos ADD CONSTRAINT photos_pkey PRIMARY KEY (id, owner),
    ADD CONSTRAINT photos_bucket_key_key UNIQUE (bucket, key, owner);
CREATE INDEX photos_status ON photos (status) WHERE status <> 'tagged';
CREATE INDEX photos_owner_sort_at ON photos
    (owner, sightline_sort_at(taken_at, taken_at_local, event_time, created_at) DESC, id DESC)
    WHERE status = 'tagged';
CREATE INDEX photos_model_id ON photos (model_version, id) WHERE embedding IS NOT NULL;
CREATE INDEX photos_failed_recent ON photos (updated_at DESC, id DESC) WHERE status = 'failed';
CREATE INDEX photos_failed_error ON photos (error) WHERE status = 'failed';

ALTER TABLE photo_scenes ADD CONSTRAINT photo_scenes_pkey PRIMARY KEY (photo_id, rank, owner),
    ADD CONSTRAINT photo_scenes_photo_fkey FOREIGN KEY (photo_id, owner)
        REFERENCES photos (id, owner) ON DELETE CASCADE;

ALTER TABLE photo_albums ADD CONSTRAINT photo_albums_pkey PRIMARY KEY (photo_id, rank, owner),
    ADD CONSTRAINT photo_albums_photo_fkey FOREIGN KEY (photo_id, owner)
        REFERENCES photos (id, owner) ON DELETE CASCADE;
CREATE INDEX photo_albums_member ON photo_albums (owner, album, sort_at DESC, photo_id DESC);

ALTER TABLE landmark_matches
    ADD CONSTRAINT landmark_matches_pkey PRIMARY KEY (release, photo_id, landmark_id, owner),
    ADD CONSTRAINT landmark_matches_photo_fkey FOREIGN KEY (photo_id, owner)
        REFERENCES photos (id, owner) ON DELETE CASCADE,
    ADD CONSTRAINT landmark_matches_release_landmark_id_fkey FOREIGN KEY (release, landmark_id)
        REFERENCES landmarks (release, landmark_id) ON DELETE CASCADE;
CREATE INDEX landmark_matches_landmark ON landmark_matches (release, landmark_id);
CREATE INDEX landmark_matches_member
    ON landmark_matches (owner, release, landmark_id, sort_at DESC, photo_id DESC);

ALTER TABLE photo_corrections
    ADD CONSTRAINT photo_corrections_pkey PRIMARY KEY (owner, photo_id, kind, label),
    ADD CONSTRAINT photo_corrections_photo_fkey FOREIGN KEY (photo_id, owner)
        REFERENCES photos (id, owner) ON DELETE CASCADE;
CREATE INDEX photo_corrections_added ON photo_corrections (owner, kind, label)
    WHERE verdict = 'add';
CREATE INDEX photo_corrections_photo ON photo_corrections (photo_id);

-- Each partition's index is named after its parent index and its partition's number
-- (photos_owner_sort_at_p3), so a plan names the index it uses.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT ci.relname AS child, pi.relname AS parent, ct.relname AS part
        FROM pg_inherits h
        JOIN pg_class ci ON ci.oid = h.inhrelid
        JOIN pg_class pi ON pi.oid = h.inhparent
        JOIN pg_index x ON x.indexrelid = ci.oid
        JOIN pg_class ct ON ct.oid = x.indrelid
        WHERE pi.relkind = 'I'
          AND x.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent IN (
              'photos'::regclass, 'photo_scenes'::regclass, 'photo_albums'::regclass,
              'landmark_matches'::regclass, 'photo_corrections'::regclass))
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.child,
                       r.parent || '_' || substring(r.part FROM '_(p[0-9]+)$'));
    END LOOP;
END
$$;

-- ------------------------------------------------------------ 3. the views
-- visible_photos: 0012's definition, unchanged.
CREATE VIEW visible_photos AS
    SELECT p.id, p.owner, p.bucket, p.key, p.version_id, p.etag, p.size, p.sequencer,
           p.event_time, p.status, p.error, p.attempts, p.taken_at, p.taken_at_local,
           p.gps_lat, p.gps_lon, p.width, p.height, p.camera, p.model_version,
           p.model_trained, p.embedding, p.scene_probs, p.indoor, p.created_at, p.updated_at,
           sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at) AS sort_at,
           p.scene_trained, p.embedding_trained  -- 0010: provenance per head
    FROM photos p WHERE p.status = 'tagged';

-- album_membership: latest definition from 0015_generations.sql. Changed: every join of a
-- photo to its tags also matches the owner (one partition, one shard).
CREATE VIEW album_membership AS
    SELECT v.owner, 'scene'::text AS kind, a.album AS label, v.id AS photo_id, a.score,
           v.sort_at, NULL::text AS release,
           coalesce(v.scene_trained, v.model_trained) AS model_trained,  -- the head that filed it
           false AS added_by_owner
    FROM visible_photos v JOIN photo_albums a ON a.owner = v.owner AND a.photo_id = v.id
    WHERE NOT EXISTS (SELECT FROM photo_corrections c
                      WHERE c.owner = v.owner AND c.photo_id = v.id
                        AND c.kind = 'scene' AND c.label = a.album)
    UNION ALL
    SELECT v.owner, 'landmark', m.landmark_id, v.id, m.score, v.sort_at, r.version,
           coalesce(v.embedding_trained, v.model_trained), false
    FROM releases r
    JOIN landmark_matches m ON m.release = r.version
    JOIN visible_photos v ON v.owner = m.owner AND v.id = m.photo_id
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
    FROM photo_corrections c JOIN visible_photos v ON v.owner = c.owner AND v.id = c.photo_id
    WHERE c.verdict = 'add';

-- ------------------------------------------------------------ 4. trigger functions
-- sightline_member_fill / sightline_scene_member_fill: latest definitions from
-- 0012_storage.sql. Changed: the owner is no longer filled in (a row is routed to its
-- partition by owner before a BEFORE trigger runs, so the writer must give it); the sort key
-- and trained flag still are, from the photo of that owner.
CREATE OR REPLACE FUNCTION sightline_member_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner IS NULL THEN
        RAISE EXCEPTION 'landmark_matches.owner is required (the photo''s owner)'
            USING ERRCODE = 'not_null_violation';
    END IF;
    IF NEW.sort_at IS NULL THEN
        SELECT sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at)
        INTO NEW.sort_at
        FROM photos p WHERE p.owner = NEW.owner AND p.id = NEW.photo_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE FUNCTION sightline_scene_member_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner IS NULL THEN
        RAISE EXCEPTION 'photo_albums.owner is required (the photo''s owner)'
            USING ERRCODE = 'not_null_violation';
    END IF;
    IF NEW.sort_at IS NULL OR NEW.trained IS NULL THEN
        SELECT coalesce(NEW.sort_at, sightline_sort_at(p.taken_at, p.taken_at_local,
                                                       p.event_time, p.created_at)),
               coalesce(NEW.trained, p.scene_trained, p.model_trained, false)
        INTO NEW.sort_at, NEW.trained
        FROM photos p WHERE p.owner = NEW.owner AND p.id = NEW.photo_id;
    END IF;
    RETURN NEW;
END
$$;

-- sightline_photos_changed: latest definition from 0012_storage.sql. Changed: the owner
-- never changes in place (refused below), so the tags follow the sort key, trained flag and
-- status only, found by (owner, photo id).
CREATE OR REPLACE FUNCTION sightline_photos_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    IF NEW.status <> 'tagged' THEN
        DELETE FROM photo_albums WHERE owner = NEW.owner AND photo_id = NEW.id;
        DELETE FROM landmark_matches WHERE owner = NEW.owner AND photo_id = NEW.id;
    ELSE
        UPDATE photo_albums SET
            sort_at = sightline_sort_at(NEW.taken_at, NEW.taken_at_local, NEW.event_time,
                                        NEW.created_at),
            trained = coalesce(NEW.scene_trained, NEW.model_trained, false)
        WHERE owner = NEW.owner AND photo_id = NEW.id;
        UPDATE landmark_matches SET
            sort_at = sightline_sort_at(NEW.taken_at, NEW.taken_at_local, NEW.event_time,
                                        NEW.created_at)
        WHERE owner = NEW.owner AND photo_id = NEW.id;
    END IF;
    FOR c IN SELECT DISTINCT k.owner, k.kind, k.label FROM photo_corrections k
             WHERE k.owner = NEW.owner AND k.photo_id = NEW.id LOOP
        PERFORM sightline_album_queue_recount(c.owner, c.kind, c.label);
    END LOOP;
    IF current_setting('sightline.album_defer', true) IS DISTINCT FROM 'on' THEN
        PERFORM sightline_album_flush();
    END IF;
    RETURN NULL;
END
$$;

-- New: the owner is the distribution key; a photo of another owner is a new photo.
CREATE FUNCTION sightline_photo_owner_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a photo''s owner cannot change (photo %: % -> %); write the object '
        'again under its new owner (the old row is deleted)', OLD.id, OLD.owner, NEW.owner
        USING ERRCODE = 'feature_not_supported';
END
$$;

-- sightline_photo_model_changed: latest definition from 0015_generations.sql. Changed: by
-- (owner, photo id).
CREATE OR REPLACE FUNCTION sightline_photo_model_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM landmark_matches m USING releases r
    WHERE m.owner = NEW.owner AND m.photo_id = NEW.id AND r.version = m.release
      AND r.model_version <> NEW.model_version;
    RETURN NULL;
END
$$;

-- sightline_photo_deleting: latest definition from 0012_storage.sql. Changed: by
-- (owner, photo id).
CREATE OR REPLACE FUNCTION sightline_photo_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM photo_corrections WHERE owner = OLD.owner AND photo_id = OLD.id) THEN
        DELETE FROM photo_corrections WHERE owner = OLD.owner AND photo_id = OLD.id;
    END IF;
    RETURN OLD;
END
$$;

-- ------------------------------------------------------------ 5. triggers, as before
CREATE TRIGGER photos_corrections_first BEFORE DELETE ON photos
    FOR EACH ROW EXECUTE FUNCTION sightline_photo_deleting();
CREATE TRIGGER photos_owner_fixed BEFORE UPDATE OF owner ON photos
    FOR EACH ROW WHEN (OLD.owner IS DISTINCT FROM NEW.owner)
    EXECUTE FUNCTION sightline_photo_owner_fixed();
CREATE TRIGGER photos_members_follow
    AFTER UPDATE OF taken_at, taken_at_local, event_time, created_at, status,
        model_trained, scene_trained
    ON photos FOR EACH ROW
    WHEN (OLD.model_trained IS DISTINCT FROM NEW.model_trained  -- an add's 'untrained'
          OR OLD.scene_trained IS DISTINCT FROM NEW.scene_trained
          OR sightline_sort_at(OLD.taken_at, OLD.taken_at_local, OLD.event_time, OLD.created_at)
             IS DISTINCT FROM
             sightline_sort_at(NEW.taken_at, NEW.taken_at_local, NEW.event_time, NEW.created_at)
          OR (OLD.status = 'tagged') IS DISTINCT FROM (NEW.status = 'tagged'))
    EXECUTE FUNCTION sightline_photos_changed();
CREATE TRIGGER photos_model_changed AFTER UPDATE OF model_version ON photos
    FOR EACH ROW WHEN (NEW.model_version IS NOT NULL
                       AND OLD.model_version IS DISTINCT FROM NEW.model_version)
    EXECUTE FUNCTION sightline_photo_model_changed();
CREATE TRIGGER photos_status_count_ins AFTER INSERT OR DELETE ON photos
    FOR EACH ROW EXECUTE FUNCTION sightline_status_changed();
CREATE TRIGGER photos_status_count_upd AFTER UPDATE OF status ON photos
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION sightline_status_changed();
CREATE TRIGGER photos_status_count_trunc AFTER TRUNCATE ON photos
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_status_truncated();

CREATE TRIGGER photo_albums_fill BEFORE INSERT ON photo_albums
    FOR EACH ROW EXECUTE FUNCTION sightline_scene_member_fill();
CREATE TRIGGER photo_albums_summary_ins AFTER INSERT ON photo_albums
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_scene_members_changed();
CREATE TRIGGER photo_albums_summary_del AFTER DELETE ON photo_albums
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_scene_members_changed();
CREATE TRIGGER photo_albums_summary_upd AFTER UPDATE ON photo_albums
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_scene_members_changed();
CREATE TRIGGER photo_albums_summary_trunc AFTER TRUNCATE ON photo_albums
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_members_truncated();

CREATE TRIGGER landmark_matches_fill BEFORE INSERT ON landmark_matches
    FOR EACH ROW EXECUTE FUNCTION sightline_member_fill();
CREATE TRIGGER landmark_matches_summary_ins AFTER INSERT ON landmark_matches
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_landmark_members_changed();
CREATE TRIGGER landmark_matches_summary_del AFTER DELETE ON landmark_matches
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_landmark_members_changed();
CREATE TRIGGER landmark_matches_summary_upd AFTER UPDATE ON landmark_matches
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_landmark_members_changed();
CREATE TRIGGER landmark_matches_summary_trunc AFTER TRUNCATE ON landmark_matches
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_members_truncated();

CREATE TRIGGER photo_corrections_summary_ins AFTER INSERT ON photo_corrections
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_corrections_changed();
CREATE TRIGGER photo_corrections_summary_del AFTER DELETE ON photo_corrections
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_corrections_changed();
CREATE TRIGGER photo_corrections_summary_upd AFTER UPDATE ON photo_corrections
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_corrections_changed();

-- ------------------------------------------------------------ 6. the write path
-- sightline_write_photos: latest definition from 0012_storage.sql. Changed: the conflict
-- target is (bucket, key, owner); an object stored under another owner is deleted first when
-- this event is not older (else the write is 'stale'); scene rows carry the owner; the
-- rewrite's deletes go by (owner, photo id).
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
                    DELETE FROM photo_scenes s WHERE s.owner = powner AND s.photo_id = pid;
                    DELETE FROM photo_albums a WHERE a.owner = powner AND a.photo_id = pid;
                    DELETE FROM landmark_matches m WHERE m.owner = powner AND m.photo_id = pid;
                END IF;
                INSERT INTO photo_scenes (photo_id, rank, class_name, probability, owner)
                    SELECT pid, s.ord, s.e->>0, (s.e->>1)::real, powner  -- changed: owner
                    FROM jsonb_array_elements(coalesce(p->'scenes', '[]')) WITH ORDINALITY
                         AS s(e, ord);
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
        EXCEPTION WHEN OTHERS THEN
            idx := i; photo_id := NULL; outcome := 'error: ' || SQLERRM;
        END;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
    PERFORM sightline_album_flush();
END
$$;

-- sightline_write_staged: latest definition from 0013_jobs.sql. Changed as
-- sightline_write_photos above: conflict target (bucket, key, owner); each round first
-- deletes the round's objects stored under another owner when its event is not older, and
-- leaves out (stale, occ 0) those stored under another owner by a newer event; scene rows
-- carry the owner; the rewrite's deletes go by (owner, photo id).
CREATE OR REPLACE FUNCTION sightline_write_staged()
RETURNS TABLE (idx integer, photo_id bigint, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    rounds integer;
    bad    record;
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

        -- changed: by (owner, photo id)
        DELETE FROM photo_scenes t USING sightline_written w, sightline_stage s
            WHERE t.owner = w.owner AND t.photo_id = w.photo_id AND s.idx = w.idx
              AND s.occ = r;
        DELETE FROM photo_albums t USING sightline_written w, sightline_stage s
            WHERE t.owner = w.owner AND t.photo_id = w.photo_id AND s.idx = w.idx
              AND s.occ = r;
        DELETE FROM landmark_matches t USING sightline_written w, sightline_stage s
            WHERE t.owner = w.owner AND t.photo_id = w.photo_id AND s.idx = w.idx
              AND s.occ = r;
        INSERT INTO photo_scenes (photo_id, rank, class_name, probability, owner)
            SELECT w.photo_id, u.ord, u.name, u.p, w.owner  -- changed: owner
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

-- ------------------------------------------------------------ 7. album SQL: owner first
-- album_photos: latest definition from 0015_generations.sql. Changed: the page's photos are
-- read by (owner, id), so the join stays in the owner's partition (and shard).
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
            ) x JOIN photos v ON v.owner = p_owner AND v.id = x.photo_id  -- changed
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
            ) x JOIN photos v ON v.owner = p_owner AND v.id = x.photo_id  -- changed
            WHERE v.status = 'tagged'
              AND (x.model_version IS NULL
                   OR coalesce(v.model_version, x.model_version) = x.model_version)
            ORDER BY x.sort_at DESC, x.photo_id DESC
            LIMIT p_limit;
    END IF;
END
$$;

-- sightline_correct / undo_correction (0011): unchanged; they already read the photo by
-- (id, owner) and photo_corrections' key (owner, photo_id, kind, label) did not change, so
-- their ON CONFLICT target holds. scene_albums / landmark_albums read album_summaries by
-- owner (0012, 0015): unchanged. sightline_album_cover, sightline_album_adds, the recount
-- and the rebuild join corrections to photos on (id, owner) already: unchanged.

ANALYZE photos, photo_scenes, photo_albums, landmark_matches, photo_corrections;
