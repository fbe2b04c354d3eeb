-- 0020: a photo's scene rows share one index tuple (bytes per photo, issue 16).
--
-- 0017's primary key on photo_scenes (photo_id, rank, owner) took five index tuples a
-- photo: 245 bytes a photo of the 3,279 that `sightline bench writes` measured at 40,000
-- photos. The top-5 scene rows are only ever written as a set by the worker's two write
-- paths, deleted and inserted under the photo row's lock (the upsert of the photo takes it
-- first; a photo's delete cascades), so the key guarded nothing the writer does not. A plain
-- index on photo_id is deduplicated by the B-tree (PostgreSQL 13+): the five rows share one
-- index tuple with five row pointers, 77 bytes a photo in the same bench.
-- photo_albums keeps its key: a re-file (re-tag) rewrites album rows without the photo's
-- lock, and the key is what turns a concurrent rewrite by a worker into a retried conflict
-- instead of a photo filed twice.
ALTER TABLE photo_scenes DROP CONSTRAINT photo_scenes_pkey;
CREATE INDEX photo_scenes_photo ON photo_scenes (photo_id);
