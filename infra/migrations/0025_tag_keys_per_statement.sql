-- 0025: the scene and album rows' keys to their photo checked once a statement (issue 13).
--
-- 0019's foreign keys (photo_scenes_pN and photo_albums_pN (photo_id, owner) -> photos_pN
-- (id, owner)) check each inserted row with a query of its own: a photo's five scene rows
-- and its album rows were about a quarter of the worker's write at batch 16 and half of the
-- two inserts at batch 256 (auto_explain, docs/library.md). They are replaced by one
-- statement trigger per table that does what the keys did, for all of a statement's rows:
--  * every referenced photo is locked FOR KEY SHARE, as a key's check locks it, so a
--    concurrent delete of the photo waits for this transaction, and then takes the new rows
--    with it (below);
--  * a row whose photo is not there refuses the statement with the error a key gives
--    (SQLSTATE 23503, foreign_key_violation), so the write paths' per-photo fallback and its
--    messages are unchanged.
-- ON DELETE CASCADE: sightline_photo_deleting (0019), which already deletes a photo's
-- album and landmark rows and corrections through their parents, deletes its scene rows too.
-- TRUNCATE photos CASCADE reached the tag tables through the keys; the photos truncate
-- trigger (0023) now empties these two tables itself.
-- landmark_matches and photo_corrections keep their keys (written a few rows at a time).
-- (Citus: docs/operations.md puts keys back on the parents before distributing, these two
-- included.)

DO $$
DECLARE
    con record;
BEGIN
    FOR con IN
        SELECT c.conrelid::regclass AS tab, c.conname
        FROM pg_constraint c
        WHERE c.contype = 'f'
          AND c.confrelid IN (SELECT relid FROM pg_partition_tree('photos'))
          AND c.conrelid IN (SELECT relid FROM pg_partition_tree('photo_scenes')
                             UNION ALL
                             SELECT relid FROM pg_partition_tree('photo_albums'))
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', con.tab, con.conname);
    END LOOP;
END
$$;

CREATE FUNCTION sightline_tags_have_photos() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing record;
BEGIN
    -- The lock a key's check takes, for each photo the statement's rows name: one probe of
    -- (id, owner) a photo (LATERAL: never a join over every photo), the first one missing
    -- kept. A photo deleted by a transaction that committed while this one waited is not
    -- returned, so it counts as missing, as for a key.
    SELECT t.photo_id, t.owner INTO missing
        FROM (SELECT DISTINCT r.photo_id, r.owner FROM tag_rows r) t
        LEFT JOIN LATERAL (SELECT p.id FROM photos p
                           WHERE p.id = t.photo_id AND p.owner = t.owner
                           FOR KEY SHARE OF p) x ON true
        WHERE x.id IS NULL
        LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%"',
                TG_TABLE_NAME, TG_TABLE_NAME || '_photo_fkey'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (photo_id, owner)=(%s, %s) is not present in table "photos".',
                                  missing.photo_id, missing.owner);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER photo_scenes_photo_key_ins AFTER INSERT ON photo_scenes
    REFERENCING NEW TABLE AS tag_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_tags_have_photos();
CREATE TRIGGER photo_scenes_photo_key_upd AFTER UPDATE ON photo_scenes
    REFERENCING NEW TABLE AS tag_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_tags_have_photos();
CREATE TRIGGER photo_albums_photo_key_ins AFTER INSERT ON photo_albums
    REFERENCING NEW TABLE AS tag_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_tags_have_photos();
CREATE TRIGGER photo_albums_photo_key_upd AFTER UPDATE ON photo_albums
    REFERENCING NEW TABLE AS tag_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_tags_have_photos();

-- The cascade the scene rows' keys gave (0019's function, plus the scene rows).
CREATE OR REPLACE FUNCTION sightline_photo_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM photo_corrections WHERE owner = OLD.owner AND photo_id = OLD.id) THEN
        DELETE FROM photo_corrections WHERE owner = OLD.owner AND photo_id = OLD.id;
    END IF;
    IF EXISTS (SELECT FROM photo_albums WHERE owner = OLD.owner AND photo_id = OLD.id) THEN
        DELETE FROM photo_albums WHERE owner = OLD.owner AND photo_id = OLD.id;
    END IF;
    IF EXISTS (SELECT FROM landmark_matches WHERE owner = OLD.owner AND photo_id = OLD.id) THEN
        DELETE FROM landmark_matches WHERE owner = OLD.owner AND photo_id = OLD.id;
    END IF;
    -- added (0025): the scene rows, which 0019's keys deleted
    DELETE FROM photo_scenes WHERE owner = OLD.owner AND photo_id = OLD.id;
    RETURN OLD;
END
$$;

-- 0023's truncate trigger, plus the two tables the keys' cascade used to empty.
CREATE OR REPLACE FUNCTION sightline_status_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM photo_status_counts;
    DELETE FROM photo_head_counts;
    DELETE FROM album_summaries;
    TRUNCATE photo_scenes, photo_albums;  -- added (0025)
    RETURN NULL;
END
$$;
