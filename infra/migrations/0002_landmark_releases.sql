-- Landmark releases at scale.
-- Training photos per landmark: the article's frequent (> 100) vs rare split.
ALTER TABLE landmarks ADD COLUMN train_photos integer;

-- Matching is by inner product of unit vectors (<#>), so the index uses vector_ip_ops.
-- The column is untyped (any width), so the index is on a cast to the default width,
-- partial so that rows of another width never reach the cast.
CREATE INDEX centroids_embedding_ip_512 ON centroids
    USING hnsw ((embedding::vector(512)) vector_ip_ops)
    WHERE vector_dims(embedding) = 512;

-- A re-tag streams one model version's embeddings in photo-id order.
CREATE INDEX photos_model_id ON photos (model_version, id) WHERE embedding IS NOT NULL;

-- Keep embeddings in the row: a 512-wide vector (2 KB) would otherwise go to TOAST, and a
-- re-tag would pay one TOAST lookup per photo. Random floats do not compress anyway.
ALTER TABLE photos ALTER COLUMN embedding SET STORAGE PLAIN;
