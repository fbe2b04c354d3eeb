-- 0009 (issue 12, field faults):
-- * photos.warning: a non-fatal note on a tagged photo, e.g. an EXIF block that is present
--   but cannot be parsed (so "no GPS" is never silent).
-- * status 'ignored': an object under an opaque key (no extension) whose bytes are not an
--   image; it is not a failure and is never retried.
-- * the element's 'warning' is written by sightline_write_photos as 0012_storage.sql defines
--   it (one redefinition there, not a copy per migration).
ALTER TABLE photos ADD COLUMN warning text;
ALTER TABLE photos DROP CONSTRAINT photos_status_check;
ALTER TABLE photos ADD CONSTRAINT photos_status_check
    CHECK (status IN ('pending', 'tagged', 'failed', 'gone', 'deleted', 'ignored'));
