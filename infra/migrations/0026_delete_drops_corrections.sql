-- A delete event's tombstone (status 'deleted') takes the photo's corrections with it, as a
-- row delete already does (sightline_photo_deleting, BEFORE DELETE on photos). A later upload
-- at the same key reuses the row (same id) but is a new photo: a hide or an add made for
-- the old one must not apply to it (a trial found a re-uploaded photo still hidden from the
-- album its predecessor had been hidden from).
CREATE FUNCTION sightline_photo_tombstoned() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM photo_corrections WHERE owner = NEW.owner AND photo_id = NEW.id;
    RETURN NULL;
END
$$;

-- AFTER ROW triggers fire in name order: this one before photos_members_follow, which moves
-- the photo's album summaries for the status change and must find its corrections gone (the
-- correction trigger queues a recount of each album they named, as for a row delete).
CREATE TRIGGER photos_corrections_dropped AFTER UPDATE OF status ON photos
    FOR EACH ROW WHEN (NEW.status = 'deleted' AND OLD.status IS DISTINCT FROM 'deleted')
    EXECUTE FUNCTION sightline_photo_tombstoned();

-- Corrections already left on tombstones.
DELETE FROM photo_corrections c USING photos p
WHERE p.id = c.photo_id AND p.owner = c.owner AND p.status = 'deleted';
