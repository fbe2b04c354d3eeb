-- Provenance per head: a photo row records whether its scene labels and its embedding came
-- from a trained head, so a real scene classifier beside an untrained embedding head files
-- real scene albums and scene_albums().untrained stays truthful per head. NULL: tagged before
-- this migration (model_trained, which covered both heads, still says what was known).
ALTER TABLE photos ADD COLUMN scene_trained boolean, ADD COLUMN embedding_trained boolean;

-- sightline_write_photos (0012_storage.sql) writes both columns; the album functions read
-- them through album_membership (0011): one definition each, not a copy per migration.
