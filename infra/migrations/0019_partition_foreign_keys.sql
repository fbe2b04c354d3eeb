-- 0019: the tag tables' foreign keys to photos, partition to partition.
--
-- 0017 declared them on the partitioned tables: photo_scenes (photo_id, owner) ->
-- photos (id, owner), and the same for photo_albums, landmark_matches and photo_corrections.
-- A key that references a partitioned table is checked through the partitioned table, with
-- partition routing for every inserted tag row, and the worker's staged write inserts about
-- seven tag rows a photo: with those keys it wrote 1,305 rows/s, with the keys below 2,494
-- (one run here, batches of 64; without any key 3,671).
-- Every photo table is hash-partitioned by owner with the same modulus, so a tag row in
-- partition k of its table always references a photo in partition k of photos: a key from
-- each tag partition to the photos partition with the same bounds checks exactly what the
-- parent's key checked, with ON DELETE CASCADE as before, at plain-table cost.
-- A cascade from a partition's key deletes from the tag partition itself, where the album
-- summaries' statement triggers (on the partitioned tables, 0012/0017) do not fire. So a
-- photo's album and landmark rows are deleted through their partitioned tables before the
-- photo, as its corrections already were (sightline_photo_deleting); the keys' cascade then
-- finds only scene rows, which no summary counts.
-- (Citus: docs/operations.md says to put these keys back on the parents before distributing.)

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
    RETURN OLD;
END
$$;

DO $$
DECLARE
    child text;
    con   record;
    leaf  record;
    target text;
BEGIN
    FOREACH child IN ARRAY ARRAY['photo_scenes', 'photo_albums', 'landmark_matches',
                                 'photo_corrections'] LOOP
        SELECT conname INTO con FROM pg_constraint
         WHERE conrelid = child::regclass AND contype = 'f' AND conparentid = 0
           AND confrelid = 'photos'::regclass;
        IF NOT FOUND THEN
            RAISE EXCEPTION '0019: % has no foreign key to photos', child;
        END IF;
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', child, con.conname);
        FOR leaf IN
            SELECT c.oid::regclass::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = child::regclass
        LOOP
            -- the photos partition with the same bounds (not its name: bounds are the contract)
            SELECT c.oid::regclass::text INTO target
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'photos'::regclass
               AND pg_get_expr(c.relpartbound, c.oid) = leaf.bound;
            IF target IS NULL THEN
                RAISE EXCEPTION '0019: no photos partition %', leaf.bound;
            END IF;
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I FOREIGN KEY (photo_id, owner) '
                           'REFERENCES %s (id, owner) ON DELETE CASCADE',
                           leaf.name, leaf.name || '_photo_fkey', target);
        END LOOP;
    END LOOP;
END
$$;
