-- Storage at library scale (issue 16), in steps:
--   1. half precision: embeddings and scene probabilities as halfvec; one width per model;
--   2. album membership carries (owner, sort key), indexed so an album page is a range scan;
--   3. per-owner album summaries (count, cover) kept by triggers in the writing transaction;
--   4. photo counts by status from counters kept by a trigger;
--   5. album functions read summaries and membership indexes.
-- Merged with 0011 (issue 15), which runs first: membership is 0011's rule (every album a
-- photo is filed in, ranks 1..K; the owner's corrections win: a hidden label leaves, an added
-- one joins), the sort key is 0011's sightline_sort_at(), and summaries follow corrections in
-- the correcting transaction (a trigger on photo_corrections recounts the albums touched).
-- Needs pgvector >= 0.7 (halfvec); on 0.6 run ALTER EXTENSION vector UPDATE first.
DO $$
DECLARE
    v text := (SELECT extversion FROM pg_extension WHERE extname = 'vector');
BEGIN
    IF string_to_array(split_part(v, '-', 1), '.')::int[] < ARRAY[0, 7] THEN
        RAISE EXCEPTION 'pgvector % has no halfvec: install pgvector >= 0.7 on the server, '
            'run ALTER EXTENSION vector UPDATE in this database, then upgrade again', v;
    END IF;
END
$$;

-- ------------------------------------------------------------ 1. half precision
-- float16 keeps 11 significant bits: the inner product of two unit vectors moves by at most
-- 2^-11 (< 5e-4), each probability by at most 2^-11 of itself (tests/test_half_precision.py
-- checks matches and albums against float32). 8 + 2 bytes a value: 1,032 for 512 dims.
-- A column's type cannot change under a view that reads it: drop visible_photos and 0011's
-- album_membership over it, and recreate both exactly as 0011 left them (below).
DROP VIEW album_membership;
DROP VIEW visible_photos;
ALTER TABLE photos
    ALTER COLUMN embedding TYPE halfvec USING embedding::halfvec,
    ALTER COLUMN scene_probs TYPE halfvec USING scene_probs::real[]::halfvec;
-- The embedding stays in the row (a re-tag reads it; it does not compress). Scene
-- probabilities keep halfvec's default (EXTERNAL): in the row while the row fits a quarter
-- page, moved to TOAST only when longer keys or text push it past that.
ALTER TABLE photos ALTER COLUMN embedding SET STORAGE PLAIN;
-- visible_photos: 0011's definition, unchanged (album_membership follows photo_albums' rebuild).
CREATE VIEW visible_photos AS
    SELECT p.id, p.owner, p.bucket, p.key, p.version_id, p.etag, p.size, p.sequencer,
           p.event_time, p.status, p.error, p.attempts, p.taken_at, p.taken_at_local,
           p.gps_lat, p.gps_lon, p.width, p.height, p.camera, p.model_version,
           p.model_trained, p.embedding, p.scene_probs, p.indoor, p.created_at, p.updated_at,
           sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at) AS sort_at,
           p.scene_trained, p.embedding_trained  -- 0010: provenance per head
    FROM photos p WHERE p.status = 'tagged';

-- One embedding width per model version: the column is untyped so two models of different
-- widths coexist in it during a switch; each model's rows keep the width recorded here, and
-- any vector index is per model version, e.g.
--   CREATE INDEX ON photos USING hnsw ((embedding::halfvec(768)) halfvec_ip_ops)
--       WHERE model_version = 'v2';
-- dropped when the old model retires.
CREATE TABLE model_embeddings (
    model_version text PRIMARY KEY,
    embedding_dim integer NOT NULL CHECK (embedding_dim > 0)
);
INSERT INTO model_embeddings (model_version, embedding_dim)
    SELECT DISTINCT ON (model_version) model_version, vector_dims(embedding)
    FROM photos WHERE embedding IS NOT NULL AND model_version IS NOT NULL
    ORDER BY model_version;

-- ------------------------------------------------------------ 2. album membership
-- Scene membership: every photo_albums row (0011: the albums a photo is filed in, ranks
-- 1..K). Landmark membership: landmark_matches rows of a release. Either minus the rows the
-- owner corrected (photo_corrections), plus the owner's adds (album_membership is the rule).
-- Both tables carry the photo's owner and sort key (sightline_sort_at, 0011), copied from
-- photos on insert and kept equal by sightline_photos_changed() below.
-- photo_albums is rebuilt (not altered) so the new columns pack without padding.
CREATE TABLE photo_albums_v2 (
    sort_at   timestamptz NOT NULL,
    photo_id  bigint NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
    score     real NOT NULL,
    rank      smallint NOT NULL,
    trained   boolean NOT NULL,   -- the scene head's provenance (0010), for 'untrained'
    owner     text NOT NULL,
    album     text NOT NULL,
    PRIMARY KEY (photo_id, rank)
);
INSERT INTO photo_albums_v2 (sort_at, photo_id, score, rank, trained, owner, album)
    SELECT sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at),
           a.photo_id, a.score, a.rank,
           coalesce(p.scene_trained, p.model_trained, false), p.owner, a.album
    FROM photo_albums a JOIN photos p ON p.id = a.photo_id;
DROP TABLE photo_albums;
ALTER TABLE photo_albums_v2 RENAME TO photo_albums;
ALTER INDEX photo_albums_v2_pkey RENAME TO photo_albums_pkey;
ALTER TABLE photo_albums RENAME CONSTRAINT photo_albums_v2_photo_id_fkey TO photo_albums_photo_id_fkey;
-- (owner, kind, album, sort key): the kind is the table, the album the label.
-- (0011's photos_owner_sort_at stays: album pages no longer walk it, but it keeps the
-- owner's whole timeline a keyset walk.) Merged: every rank is a member (0011), not rank 1.
CREATE INDEX photo_albums_member ON photo_albums (owner, album, sort_at DESC, photo_id DESC);

ALTER TABLE landmark_matches ADD COLUMN owner text, ADD COLUMN sort_at timestamptz;
UPDATE landmark_matches m
    SET owner = p.owner,
        sort_at = sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at)
    FROM photos p WHERE p.id = m.photo_id;
ALTER TABLE landmark_matches ALTER COLUMN owner SET NOT NULL, ALTER COLUMN sort_at SET NOT NULL;
CREATE INDEX landmark_matches_member
    ON landmark_matches (owner, release, landmark_id, sort_at DESC, photo_id DESC);

-- album_membership: 0011's definition, unchanged (the rule the summaries below keep).
CREATE VIEW album_membership AS
    SELECT v.owner, 'scene'::text AS kind, a.album AS label, v.id AS photo_id, a.score,
           v.sort_at, NULL::text AS release,
           coalesce(v.scene_trained, v.model_trained) AS model_trained,  -- the head that filed it
           false AS added_by_owner
    FROM visible_photos v JOIN photo_albums a ON a.photo_id = v.id
    WHERE NOT EXISTS (SELECT FROM photo_corrections c
                      WHERE c.owner = v.owner AND c.photo_id = v.id
                        AND c.kind = 'scene' AND c.label = a.album)
    UNION ALL
    SELECT v.owner, 'landmark', m.landmark_id, v.id, m.score, v.sort_at, r.version,
           coalesce(v.embedding_trained, v.model_trained), false
    FROM releases r
    JOIN landmark_matches m ON m.release = r.version
    JOIN visible_photos v ON v.id = m.photo_id
    WHERE r.status = 'active'
      AND NOT EXISTS (SELECT FROM photo_corrections c
                      WHERE c.owner = v.owner AND c.photo_id = v.id
                        AND c.kind = 'landmark' AND c.label = m.landmark_id)
    UNION ALL
    SELECT v.owner, c.kind, c.label, v.id, NULL::real, v.sort_at,
           CASE WHEN c.kind = 'landmark'
                THEN (SELECT r.version FROM releases r WHERE r.status = 'active') END,
           CASE WHEN c.kind = 'scene' THEN coalesce(v.scene_trained, v.model_trained)
                ELSE coalesce(v.embedding_trained, v.model_trained) END, true
    FROM photo_corrections c JOIN visible_photos v ON v.id = c.photo_id AND v.owner = c.owner
    WHERE c.verdict = 'add';

-- Copy owner and sort key from the photo, so no writer has to (re-tag, corrections, tests).
CREATE FUNCTION sightline_member_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner IS NULL OR NEW.sort_at IS NULL THEN
        SELECT p.owner, sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at) INTO NEW.owner, NEW.sort_at
        FROM photos p WHERE p.id = NEW.photo_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION sightline_scene_member_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner IS NULL OR NEW.sort_at IS NULL OR NEW.trained IS NULL THEN
        SELECT p.owner, sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at),
               coalesce(p.scene_trained, p.model_trained, false)
        INTO NEW.owner, NEW.sort_at, NEW.trained
        FROM photos p WHERE p.id = NEW.photo_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER photo_albums_fill BEFORE INSERT ON photo_albums
    FOR EACH ROW EXECUTE FUNCTION sightline_scene_member_fill();
CREATE TRIGGER landmark_matches_fill BEFORE INSERT ON landmark_matches
    FOR EACH ROW EXECUTE FUNCTION sightline_member_fill();

-- ------------------------------------------------------------ 3. album summaries
-- One row per (owner, kind, release, album): photos in it, how many of them an untrained
-- model tagged, and the cover (the newest photo by sort key, then id). Landmark albums are
-- kept per release ('' for scenes), so activating a re-tagged release switches at once; the
-- owner's landmark adds (0011), which hold in every release, are the landmark row with
-- release '' and landmark_albums adds it to the active release's row.
-- Rows that fall to zero photos stay (no delete/insert race between writers); readers skip them.
CREATE TABLE album_summaries (
    owner          text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('scene', 'landmark')),
    release        text NOT NULL DEFAULT '',
    album          text NOT NULL,
    photos         bigint NOT NULL DEFAULT 0 CHECK (photos >= 0),
    untrained      bigint NOT NULL DEFAULT 0,
    cover_sort_at  timestamptz,
    cover_photo_id bigint,
    PRIMARY KEY (owner, kind, release, album)
);

-- The newest member of one album: an index range scan of one row. The one place that says
-- what an album's members are (corrections may redefine it; copy it whole when they do).
CREATE FUNCTION sightline_album_cover(p_owner text, p_kind text, p_release text, p_album text,
                                      OUT sort_at timestamptz, OUT photo_id bigint)
LANGUAGE sql STABLE AS $$
    -- Merged with 0011: every rank, less the rows the owner corrected, plus the owner's adds
    -- (scene adds in the scene album, landmark adds as release '').
    SELECT * FROM (
        SELECT * FROM (
            SELECT a.sort_at, a.photo_id FROM photo_albums a
            WHERE p_kind = 'scene' AND a.owner = p_owner AND a.album = p_album
              AND NOT EXISTS (SELECT FROM photo_corrections c
                              WHERE c.owner = a.owner AND c.photo_id = a.photo_id
                                AND c.kind = 'scene' AND c.label = a.album)
            ORDER BY a.sort_at DESC, a.photo_id DESC LIMIT 1) s
        UNION ALL
        SELECT * FROM (
            SELECT m.sort_at, m.photo_id FROM landmark_matches m
            WHERE p_kind = 'landmark' AND m.owner = p_owner AND m.release = p_release
              AND m.landmark_id = p_album
              AND NOT EXISTS (SELECT FROM photo_corrections c
                              WHERE c.owner = m.owner AND c.photo_id = m.photo_id
                                AND c.kind = 'landmark' AND c.label = m.landmark_id)
            ORDER BY m.sort_at DESC, m.photo_id DESC LIMIT 1) l
        UNION ALL
        SELECT * FROM (
            SELECT sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at),
                   p.id
            FROM photo_corrections c JOIN photos p ON p.id = c.photo_id AND p.owner = c.owner
            WHERE c.owner = p_owner AND c.kind = p_kind AND c.label = p_album
              AND c.verdict = 'add' AND p.status = 'tagged'
              AND (p_kind = 'scene' OR p_release = '')
            ORDER BY 1 DESC, 2 DESC LIMIT 1) c
    ) x ORDER BY 1 DESC, 2 DESC LIMIT 1
$$;

-- THE summary function: adjust one album's summary by a change to its members, in the
-- caller's transaction. p_photos / p_untrained: members (and untrained members) added,
-- negative when removed. p_cover_*: the newest member added (NULL when none). p_removed: the
-- photo ids removed; when the cover is among them (or none is set) the cover is looked up
-- again. A correction that adds or hides one photo calls it with +1 and the photo as cover
-- candidate, or -1 and ARRAY[photo]; sightline_album_recount() recomputes the whole summary.
CREATE FUNCTION sightline_album_adjust(p_owner text, p_kind text, p_release text, p_album text,
                                       p_photos bigint, p_untrained bigint,
                                       p_cover_sort_at timestamptz, p_cover_photo_id bigint,
                                       p_removed bigint[] DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cur_id bigint;
    c_sort timestamptz;
    c_id   bigint;
BEGIN
    INSERT INTO album_summaries AS s (owner, kind, release, album, photos, untrained,
                                      cover_sort_at, cover_photo_id)
    VALUES (p_owner, p_kind, p_release, p_album, greatest(p_photos, 0), greatest(p_untrained, 0),
            p_cover_sort_at, p_cover_photo_id)
    ON CONFLICT (owner, kind, release, album) DO UPDATE SET
        photos = s.photos + p_photos,
        untrained = s.untrained + p_untrained,
        -- A newer cover replaces the current one (compared on the row as locked now).
        cover_sort_at = CASE WHEN p_cover_photo_id IS NOT NULL AND (s.cover_photo_id IS NULL
                                  OR (p_cover_sort_at, p_cover_photo_id)
                                     > (s.cover_sort_at, s.cover_photo_id))
                             THEN p_cover_sort_at ELSE s.cover_sort_at END,
        cover_photo_id = CASE WHEN p_cover_photo_id IS NOT NULL AND (s.cover_photo_id IS NULL
                                   OR (p_cover_sort_at, p_cover_photo_id)
                                      > (s.cover_sort_at, s.cover_photo_id))
                              THEN p_cover_photo_id ELSE s.cover_photo_id END
    RETURNING s.cover_photo_id INTO cur_id;
    IF cur_id IS NULL OR cur_id = ANY (p_removed) THEN
        SELECT c.sort_at, c.photo_id INTO c_sort, c_id
        FROM sightline_album_cover(p_owner, p_kind, p_release, p_album) c;
        UPDATE album_summaries s SET cover_sort_at = c_sort, cover_photo_id = c_id
        WHERE s.owner = p_owner AND s.kind = p_kind AND s.release = p_release
          AND s.album = p_album AND s.cover_photo_id IS NOT DISTINCT FROM cur_id;
    END IF;
END
$$;

-- Recompute one album's summary from its members (cost: the album's size).
CREATE FUNCTION sightline_album_recount(p_owner text, p_kind text, p_release text,
                                        p_album text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n      bigint;
    u      bigint;
    c_sort timestamptz;
    c_id   bigint;
BEGIN
    -- Merged with 0011: every rank; corrected rows out, the owner's adds in.
    IF p_kind = 'scene' THEN
        SELECT count(*), count(*) FILTER (WHERE NOT x.trained) INTO n, u FROM (
            SELECT a.trained FROM photo_albums a
            WHERE a.owner = p_owner AND a.album = p_album
              AND NOT EXISTS (SELECT FROM photo_corrections c
                              WHERE c.owner = a.owner AND c.photo_id = a.photo_id
                                AND c.kind = 'scene' AND c.label = a.album)
            UNION ALL
            SELECT coalesce(p.scene_trained, p.model_trained, false)
            FROM photo_corrections c JOIN photos p ON p.id = c.photo_id AND p.owner = c.owner
            WHERE c.owner = p_owner AND c.kind = 'scene' AND c.label = p_album
              AND c.verdict = 'add' AND p.status = 'tagged') x;
    ELSIF p_release = '' THEN
        SELECT count(*), 0 INTO n, u
        FROM photo_corrections c JOIN photos p ON p.id = c.photo_id AND p.owner = c.owner
        WHERE c.owner = p_owner AND c.kind = 'landmark' AND c.label = p_album
          AND c.verdict = 'add' AND p.status = 'tagged';
    ELSE
        SELECT count(*), 0 INTO n, u FROM landmark_matches m
        WHERE m.owner = p_owner AND m.release = p_release AND m.landmark_id = p_album
          AND NOT EXISTS (SELECT FROM photo_corrections c
                          WHERE c.owner = m.owner AND c.photo_id = m.photo_id
                            AND c.kind = 'landmark' AND c.label = m.landmark_id);
    END IF;
    SELECT c.sort_at, c.photo_id INTO c_sort, c_id
    FROM sightline_album_cover(p_owner, p_kind, p_release, p_album) c;
    INSERT INTO album_summaries AS s VALUES (p_owner, p_kind, p_release, p_album, n, u,
                                             c_sort, c_id)
    ON CONFLICT (owner, kind, release, album) DO UPDATE SET
        photos = EXCLUDED.photos, untrained = EXCLUDED.untrained,
        cover_sort_at = EXCLUDED.cover_sort_at, cover_photo_id = EXCLUDED.cover_photo_id;
END
$$;

-- Every summary recomputed in one set-based pass (the migration, bulk loads).
CREATE FUNCTION sightline_album_summaries_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM album_summaries;
    -- Merged with 0011: every rank; corrected rows out, the owner's adds in.
    INSERT INTO album_summaries
        SELECT owner, 'scene', '', album, count(*), count(*) FILTER (WHERE NOT trained),
               (array_agg(sort_at ORDER BY sort_at DESC, photo_id DESC))[1],
               (array_agg(photo_id ORDER BY sort_at DESC, photo_id DESC))[1]
        FROM (SELECT a.owner, a.album, a.trained, a.sort_at, a.photo_id FROM photo_albums a
              WHERE NOT EXISTS (SELECT FROM photo_corrections c
                                WHERE c.owner = a.owner AND c.photo_id = a.photo_id
                                  AND c.kind = 'scene' AND c.label = a.album)
              UNION ALL
              SELECT c.owner, c.label, coalesce(p.scene_trained, p.model_trained, false),
                     sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time,
                                       p.created_at), p.id
              FROM photo_corrections c JOIN photos p ON p.id = c.photo_id AND p.owner = c.owner
              WHERE c.kind = 'scene' AND c.verdict = 'add' AND p.status = 'tagged') x
        GROUP BY owner, album;
    INSERT INTO album_summaries
        SELECT owner, 'landmark', release, landmark_id, count(*), 0,
               (array_agg(sort_at ORDER BY sort_at DESC, photo_id DESC))[1],
               (array_agg(photo_id ORDER BY sort_at DESC, photo_id DESC))[1]
        FROM (SELECT m.owner, m.release, m.landmark_id, m.sort_at, m.photo_id
              FROM landmark_matches m
              WHERE NOT EXISTS (SELECT FROM photo_corrections c
                                WHERE c.owner = m.owner AND c.photo_id = m.photo_id
                                  AND c.kind = 'landmark' AND c.label = m.landmark_id)
              UNION ALL
              SELECT c.owner, '', c.label,
                     sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time,
                                       p.created_at), p.id
              FROM photo_corrections c JOIN photos p ON p.id = c.photo_id AND p.owner = c.owner
              WHERE c.kind = 'landmark' AND c.verdict = 'add' AND p.status = 'tagged') x
        GROUP BY owner, release, landmark_id;
    SELECT count(*) INTO n FROM album_summaries;
    RETURN n;
END
$$;
SELECT sightline_album_summaries_rebuild();

-- Lock order. Summary rows are locked by the upserts until commit; two writers locking the
-- same owner's albums in different orders would deadlock (a worker fleet writing one owner's
-- library does exactly that). So member changes are queued per statement (a session temp
-- table) and sightline_album_flush() applies them in (owner, kind, release, album) order:
-- at the end of each statement by default, or, after sightline_album_defer(), once for the
-- whole transaction (sightline_write_photos and the re-tags do this). A writer that defers
-- must flush before it commits; the queue is emptied at commit either way.
CREATE FUNCTION sightline_album_queue() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.sightline_album_deltas') IS NULL THEN
        CREATE TEMP TABLE sightline_album_deltas (
            owner text, kind text, release text, album text, photos bigint, untrained bigint,
            cover_sort_at timestamptz, cover_photo_id bigint, removed bigint[],
            recount boolean NOT NULL DEFAULT false  -- merged: recount instead of adjusting
        ) ON COMMIT DELETE ROWS;
    END IF;
END
$$;

-- (The queue table is made by the first trigger that needs it, not here: a batch that
-- changes no album leaves no temp table behind.)
CREATE FUNCTION sightline_album_defer() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('sightline.album_defer', 'on', true);
END
$$;

CREATE FUNCTION sightline_album_flush() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM set_config('sightline.album_defer', 'off', true);
    IF to_regclass('pg_temp.sightline_album_deltas') IS NULL THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT d.owner, d.kind, d.release, d.album, sum(d.photos)::bigint AS photos,
               sum(d.untrained)::bigint AS untrained,
               (array_agg(d.cover_sort_at ORDER BY d.cover_sort_at DESC NULLS LAST,
                          d.cover_photo_id DESC))[1] AS cover_sort_at,
               (array_agg(d.cover_photo_id ORDER BY d.cover_sort_at DESC NULLS LAST,
                          d.cover_photo_id DESC))[1] AS cover_photo_id,
               bool_or(d.recount) AS recount
        FROM pg_temp.sightline_album_deltas d
        GROUP BY d.owner, d.kind, d.release, d.album
        ORDER BY d.owner, d.kind, d.release, d.album
    LOOP
        -- Merged: an album a correction touched is recounted (the truth now, so the deltas
        -- queued with it are not applied on top).
        IF r.recount THEN
            PERFORM sightline_album_recount(r.owner, r.kind, r.release, r.album);
            CONTINUE;
        END IF;
        PERFORM sightline_album_adjust(
            r.owner, r.kind, r.release, r.album, r.photos, r.untrained, r.cover_sort_at,
            r.cover_photo_id,
            ARRAY(SELECT u FROM pg_temp.sightline_album_deltas d, unnest(d.removed) u
                  WHERE d.owner = r.owner AND d.kind = r.kind AND d.release = r.release
                    AND d.album = r.album));
    END LOOP;
    DELETE FROM pg_temp.sightline_album_deltas;
END
$$;

-- Statement triggers: queue one change per album a statement touched, then flush unless
-- deferred.
CREATE FUNCTION sightline_scene_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sightline_album_queue();
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO pg_temp.sightline_album_deltas
            SELECT o.owner, 'scene', '', o.album, -count(*),
                   -count(*) FILTER (WHERE NOT o.trained), NULL, NULL, array_agg(o.photo_id)
            FROM old_rows o
            WHERE NOT EXISTS (SELECT FROM photo_corrections c  -- merged: every rank, less
                              WHERE c.owner = o.owner AND c.photo_id = o.photo_id  -- corrected
                                AND c.kind = 'scene' AND c.label = o.album)
            GROUP BY o.owner, o.album;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO pg_temp.sightline_album_deltas
            SELECT n.owner, 'scene', '', n.album, count(*),
                   count(*) FILTER (WHERE NOT n.trained),
                   (array_agg(n.sort_at ORDER BY n.sort_at DESC, n.photo_id DESC))[1],
                   (array_agg(n.photo_id ORDER BY n.sort_at DESC, n.photo_id DESC))[1], NULL
            FROM new_rows n
            WHERE NOT EXISTS (SELECT FROM photo_corrections c  -- merged: every rank, less
                              WHERE c.owner = n.owner AND c.photo_id = n.photo_id  -- corrected
                                AND c.kind = 'scene' AND c.label = n.album)
            GROUP BY n.owner, n.album;
    END IF;
    IF current_setting('sightline.album_defer', true) IS DISTINCT FROM 'on' THEN
        PERFORM sightline_album_flush();
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION sightline_landmark_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sightline_album_queue();
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO pg_temp.sightline_album_deltas
            SELECT o.owner, 'landmark', o.release, o.landmark_id, -count(*), 0, NULL, NULL,
                   array_agg(o.photo_id)
            FROM old_rows o
            WHERE NOT EXISTS (SELECT FROM photo_corrections c  -- merged: less corrected rows
                              WHERE c.owner = o.owner AND c.photo_id = o.photo_id
                                AND c.kind = 'landmark' AND c.label = o.landmark_id)
            GROUP BY o.owner, o.release, o.landmark_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO pg_temp.sightline_album_deltas
            SELECT n.owner, 'landmark', n.release, n.landmark_id, count(*), 0,
                   (array_agg(n.sort_at ORDER BY n.sort_at DESC, n.photo_id DESC))[1],
                   (array_agg(n.photo_id ORDER BY n.sort_at DESC, n.photo_id DESC))[1], NULL
            FROM new_rows n
            WHERE NOT EXISTS (SELECT FROM photo_corrections c  -- merged: less corrected rows
                              WHERE c.owner = n.owner AND c.photo_id = n.photo_id
                                AND c.kind = 'landmark' AND c.label = n.landmark_id)
            GROUP BY n.owner, n.release, n.landmark_id;
    END IF;
    IF current_setting('sightline.album_defer', true) IS DISTINCT FROM 'on' THEN
        PERFORM sightline_album_flush();
    END IF;
    RETURN NULL;
END
$$;
-- (Transition tables allow one event per trigger: three triggers, one function.)
CREATE TRIGGER photo_albums_summary_ins AFTER INSERT ON photo_albums
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_scene_members_changed();
CREATE TRIGGER photo_albums_summary_del AFTER DELETE ON photo_albums
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_scene_members_changed();
CREATE TRIGGER photo_albums_summary_upd AFTER UPDATE ON photo_albums
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_scene_members_changed();
CREATE TRIGGER landmark_matches_summary_ins AFTER INSERT ON landmark_matches
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_landmark_members_changed();
CREATE TRIGGER landmark_matches_summary_del AFTER DELETE ON landmark_matches
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_landmark_members_changed();
CREATE TRIGGER landmark_matches_summary_upd AFTER UPDATE ON landmark_matches
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_landmark_members_changed();

-- TRUNCATE skips the triggers above: empty that kind's summaries with it.
CREATE FUNCTION sightline_members_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Merged: rebuilt, not emptied (the owners' adds are still members).
    PERFORM sightline_album_summaries_rebuild();
    RETURN NULL;
END
$$;
CREATE TRIGGER photo_albums_summary_trunc AFTER TRUNCATE ON photo_albums
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_members_truncated();
CREATE TRIGGER landmark_matches_summary_trunc AFTER TRUNCATE ON landmark_matches
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_members_truncated();

-- Queue a recount of every album a photo's corrections name (the summary trigger on
-- photo_corrections and sightline_photos_changed() use it): the scene album, or each release's
-- landmark album the owner has a summary for plus the adds row ('').
CREATE FUNCTION sightline_album_queue_recount(p_owner text, p_kind text, p_label text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sightline_album_queue();
    INSERT INTO pg_temp.sightline_album_deltas (owner, kind, release, album, photos, untrained,
                                                recount)
        SELECT p_owner, p_kind, r.release, p_label, 0, 0, true
        FROM (SELECT ''::text AS release
              UNION
              SELECT s.release FROM album_summaries s
              WHERE s.owner = p_owner AND s.kind = p_kind AND s.album = p_label) r;
END
$$;

-- A photo whose owner or sort key changes carries its memberships along; one that stops
-- being 'tagged' loses them (as sightline_write_photos does), so members are always visible.
-- Merged with 0011: the sort key is sightline_sort_at(); the albums the photo's corrections
-- name are recounted (an added photo follows its status, sort key and trained flag).
CREATE FUNCTION sightline_photos_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    IF NEW.status <> 'tagged' THEN
        DELETE FROM photo_albums WHERE photo_id = NEW.id;
        DELETE FROM landmark_matches WHERE photo_id = NEW.id;
    ELSE
        UPDATE photo_albums SET owner = NEW.owner,
            sort_at = sightline_sort_at(NEW.taken_at, NEW.taken_at_local, NEW.event_time,
                                        NEW.created_at),
            trained = coalesce(NEW.scene_trained, NEW.model_trained, false)
        WHERE photo_id = NEW.id;
        UPDATE landmark_matches SET owner = NEW.owner,
            sort_at = sightline_sort_at(NEW.taken_at, NEW.taken_at_local, NEW.event_time,
                                        NEW.created_at)
        WHERE photo_id = NEW.id;
    END IF;
    FOR c IN SELECT DISTINCT k.owner, k.kind, k.label FROM photo_corrections k
             WHERE k.owner IN (OLD.owner, NEW.owner) AND k.photo_id = NEW.id LOOP
        PERFORM sightline_album_queue_recount(c.owner, c.kind, c.label);
    END LOOP;
    IF current_setting('sightline.album_defer', true) IS DISTINCT FROM 'on' THEN
        PERFORM sightline_album_flush();
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER photos_members_follow
    AFTER UPDATE OF owner, taken_at, taken_at_local, event_time, created_at, status,
        model_trained, scene_trained
    ON photos FOR EACH ROW
    WHEN (OLD.owner IS DISTINCT FROM NEW.owner
          OR OLD.model_trained IS DISTINCT FROM NEW.model_trained  -- an add's 'untrained'
          OR OLD.scene_trained IS DISTINCT FROM NEW.scene_trained
          OR sightline_sort_at(OLD.taken_at, OLD.taken_at_local, OLD.event_time, OLD.created_at)
             IS DISTINCT FROM
             sightline_sort_at(NEW.taken_at, NEW.taken_at_local, NEW.event_time, NEW.created_at)
          OR (OLD.status = 'tagged') IS DISTINCT FROM (NEW.status = 'tagged'))
    EXECUTE FUNCTION sightline_photos_changed();

-- Merged with 0011: a correction (hide, add, a changed verdict, an undo, a photo's delete)
-- recounts the albums it names, in the correcting transaction.
CREATE FUNCTION sightline_corrections_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        FOR c IN SELECT DISTINCT o.owner, o.kind, o.label FROM old_rows o LOOP
            PERFORM sightline_album_queue_recount(c.owner, c.kind, c.label);
        END LOOP;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        FOR c IN SELECT DISTINCT n.owner, n.kind, n.label FROM new_rows n LOOP
            PERFORM sightline_album_queue_recount(c.owner, c.kind, c.label);
        END LOOP;
    END IF;
    IF current_setting('sightline.album_defer', true) IS DISTINCT FROM 'on' THEN
        PERFORM sightline_album_flush();
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER photo_corrections_summary_ins AFTER INSERT ON photo_corrections
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_corrections_changed();
CREATE TRIGGER photo_corrections_summary_del AFTER DELETE ON photo_corrections
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_corrections_changed();
CREATE TRIGGER photo_corrections_summary_upd AFTER UPDATE ON photo_corrections
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_corrections_changed();

-- A photo's delete removes its corrections first, as a statement of its own: their recount
-- then sees the photo's album rows (no longer corrected) and the cascade's deltas take them
-- out. Left to the cascade, the corrections' triggers fire with the rows already gone (RI
-- cascades fire their triggers at the end of the outer statement) and a hidden row would be
-- taken out twice.
CREATE INDEX photo_corrections_photo ON photo_corrections (photo_id);  -- this and the cascade
CREATE FUNCTION sightline_photo_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (Only when there are some: a DELETE fires the corrections' statement trigger anyway.)
    IF EXISTS (SELECT FROM photo_corrections WHERE photo_id = OLD.id) THEN
        DELETE FROM photo_corrections WHERE photo_id = OLD.id;
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER photos_corrections_first BEFORE DELETE ON photos
    FOR EACH ROW EXECUTE FUNCTION sightline_photo_deleting();

-- ------------------------------------------------------------ 4. photo counts by status
-- Counters, spread over 64 slots by backend so concurrent writers rarely share a row;
-- `sightline status` sums 5 x 64 rows instead of scanning every photo.
CREATE TABLE photo_status_counts (
    status text NOT NULL,
    slot   smallint NOT NULL,
    photos bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (status, slot)
);
CREATE FUNCTION sightline_status_count(p_status text, p_delta bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO photo_status_counts AS c (status, slot, photos)
    VALUES (p_status, (pg_backend_pid() % 64)::smallint, p_delta)
    ON CONFLICT (status, slot) DO UPDATE SET photos = c.photos + p_delta
$$;
CREATE FUNCTION sightline_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM sightline_status_count(OLD.status, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM sightline_status_count(NEW.status, 1);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER photos_status_count_ins AFTER INSERT OR DELETE ON photos
    FOR EACH ROW EXECUTE FUNCTION sightline_status_changed();
CREATE TRIGGER photos_status_count_upd AFTER UPDATE OF status ON photos
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION sightline_status_changed();
-- TRUNCATE skips row triggers: empty the counters with it.
CREATE FUNCTION sightline_status_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM photo_status_counts;
    RETURN NULL;
END
$$;
CREATE TRIGGER photos_status_count_trunc AFTER TRUNCATE ON photos
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_status_truncated();

CREATE FUNCTION sightline_status_counts_rebuild() RETURNS void LANGUAGE sql AS $$
    DELETE FROM photo_status_counts;
    INSERT INTO photo_status_counts (status, slot, photos)
        SELECT status, 0, count(*) FROM photos GROUP BY status;
$$;
SELECT sightline_status_counts_rebuild();
-- The rest of `sightline status`, over failed photos only: the last failures by a range
-- scan, their reasons by an index-only scan (failed rows are spread over every heap page).
CREATE INDEX photos_failed_recent ON photos (updated_at DESC, id DESC) WHERE status = 'failed';
CREATE INDEX photos_failed_error ON photos (error) WHERE status = 'failed';

-- ------------------------------------------------------------ 5. the write path and album SQL
-- sightline_write_photos: latest definition from 0005_write_batch.sql. Changed here:
--  * embedding and scene_probs are written as halfvec (parsed straight from the JSON text);
--  * an embedding's width must be its model version's (model_embeddings; the first photo of a
--    model records it);
--  * photo_albums rows carry owner, sort key and the model's trained flag (album membership);
--  * album summary changes are deferred to the end of the batch and applied in key order.
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
BEGIN
    PERFORM sightline_album_defer();  -- changed: album summaries once per batch, in key order
    FOR p IN SELECT value FROM jsonb_array_elements(batch) LOOP
        BEGIN
            pid := NULL;
            INSERT INTO photos AS ph (
                owner, bucket, key, version_id, etag, size, sequencer, event_time, status,
                error, warning, attempts, taken_at, taken_at_local, gps_lat, gps_lon, width,
                height,  -- 0009: warning
                camera, model_version, model_trained, scene_trained, embedding_trained,  -- 0010
                embedding, scene_probs, indoor)
            VALUES (
                p->>'owner', p->>'bucket', p->>'key', p->>'version_id', p->>'etag',
                (p->>'size')::bigint, p->>'sequencer', (p->>'event_time')::timestamptz,
                p->>'status', p->>'error', p->>'warning',  -- 0009: warning
                1, (p->>'taken_at')::timestamptz,
                (p->>'taken_at_local')::timestamp, (p->>'gps_lat')::float8,
                (p->>'gps_lon')::float8, (p->>'width')::integer, (p->>'height')::integer,
                p->>'camera', p->>'model_version', (p->>'model_trained')::boolean,
                (p->>'scene_trained')::boolean, (p->>'embedding_trained')::boolean,  -- 0010
                (p->>'embedding')::halfvec,                              -- changed: halfvec
                CASE WHEN jsonb_typeof(p->'scene_probs') = 'array'        -- changed: halfvec
                     THEN (p->>'scene_probs')::halfvec END,
                (p->>'indoor')::real)
            ON CONFLICT (bucket, key) DO UPDATE SET
                owner = EXCLUDED.owner, version_id = EXCLUDED.version_id,
                etag = EXCLUDED.etag, size = EXCLUDED.size, sequencer = EXCLUDED.sequencer,
                event_time = EXCLUDED.event_time, status = EXCLUDED.status,
                error = EXCLUDED.error, warning = EXCLUDED.warning,  -- 0009: warning
                attempts = ph.attempts + 1,
                taken_at = EXCLUDED.taken_at, taken_at_local = EXCLUDED.taken_at_local,
                gps_lat = EXCLUDED.gps_lat, gps_lon = EXCLUDED.gps_lon,
                width = EXCLUDED.width, height = EXCLUDED.height, camera = EXCLUDED.camera,
                model_version = EXCLUDED.model_version,
                model_trained = EXCLUDED.model_trained,
                scene_trained = EXCLUDED.scene_trained,                    -- 0010
                embedding_trained = EXCLUDED.embedding_trained,            -- 0010
                embedding = EXCLUDED.embedding,
                scene_probs = EXCLUDED.scene_probs, indoor = EXCLUDED.indoor,
                updated_at = now()
            WHERE sightline_not_older(EXCLUDED.sequencer, EXCLUDED.event_time,
                                      ph.sequencer, ph.event_time)
            RETURNING ph.id, ph.owner,
                      sightline_sort_at(ph.taken_at, ph.taken_at_local, ph.event_time,
                                        ph.created_at),  -- changed: 0011's sort key
                      vector_dims(ph.embedding), ph.xmax = 0  -- xmax 0: inserted, not updated
                INTO pid, powner, psort, pdim, pnew;

            IF pid IS NULL THEN
                idx := i; photo_id := NULL; outcome := 'stale';
            ELSE
                -- changed: one embedding width per model version.
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
                -- changed: a new photo has no tags to delete, and empty lists insert
                -- nothing (each statement on a member table fires its summary trigger).
                IF NOT pnew THEN
                    DELETE FROM photo_scenes WHERE photo_scenes.photo_id = pid;
                    DELETE FROM photo_albums WHERE photo_albums.photo_id = pid;
                    DELETE FROM landmark_matches WHERE landmark_matches.photo_id = pid;
                END IF;
                INSERT INTO photo_scenes (photo_id, rank, class_name, probability)
                    SELECT pid, s.ord, s.e->>0, (s.e->>1)::real
                    FROM jsonb_array_elements(coalesce(p->'scenes', '[]')) WITH ORDINALITY
                         AS s(e, ord);
                -- changed: owner, sort key and trained flag go with each album row.
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
    PERFORM sightline_album_flush();  -- changed
END
$$;

-- scene_albums: latest definition from 0001_init.sql (+ 0008's SECURITY DEFINER and
-- search_path). Changed: read from album_summaries, one index range scan of the owner's rows.
CREATE OR REPLACE FUNCTION scene_albums(p_owner text)
RETURNS TABLE (album text, photos bigint, cover_photo_id bigint, untrained boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT s.album, s.photos, s.cover_photo_id, s.untrained > 0
    FROM album_summaries s
    WHERE s.owner = p_owner AND s.kind = 'scene' AND s.release = '' AND s.photos > 0
    ORDER BY s.photos DESC, s.album
$$;

-- landmark_albums: latest definition from 0011_albums_people_trust.sql. Changed: read from
-- album_summaries: the active release's row plus the owner's adds (release ''), which are
-- disjoint (a corrected match is in neither count but the add's).
CREATE OR REPLACE FUNCTION landmark_albums(p_owner text)
RETURNS TABLE (country text, city text, landmark_id text, name text, photos bigint,
               cover_photo_id bigint, release text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH active AS (SELECT r.version FROM releases r WHERE r.status = 'active'),
    s AS (
        SELECT s.album, sum(s.photos)::bigint AS photos,
               (array_agg(s.cover_photo_id ORDER BY s.cover_sort_at DESC NULLS LAST,
                          s.cover_photo_id DESC NULLS LAST))[1] AS cover_photo_id
        FROM album_summaries s
        WHERE s.owner = p_owner AND s.kind = 'landmark'
          AND (s.release = '' OR s.release = (SELECT version FROM active))
        GROUP BY s.album
        HAVING sum(s.photos) > 0)
    SELECT coalesce(l.country, ''), coalesce(l.city, ''), s.album, coalesce(l.name, s.album),
           s.photos, s.cover_photo_id, (SELECT version FROM active)
    FROM s LEFT JOIN landmarks l
        ON l.release = (SELECT version FROM active) AND l.landmark_id = s.album
    ORDER BY 1, 2, s.photos DESC, 4
$$;

-- Merged with 0011: the owner's adds to one album after a keyset, newest first.
CREATE FUNCTION sightline_album_adds(p_owner text, p_kind text, p_album text,
                                     p_after_sort timestamptz, p_after_id bigint,
                                     p_limit integer)
RETURNS TABLE (photo_id bigint, sort_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT p.id, sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time,
                                       p.created_at) AS sort_at
        FROM photo_corrections c JOIN photos p ON p.id = c.photo_id AND p.owner = c.owner
        WHERE c.owner = p_owner AND c.kind = p_kind AND c.label = p_album
          AND c.verdict = 'add' AND p.status = 'tagged') a
    WHERE (a.sort_at, a.id) < (p_after_sort, p_after_id)
    ORDER BY a.sort_at DESC, a.id DESC
    LIMIT p_limit
$$;
REVOKE EXECUTE ON FUNCTION sightline_album_adds(text, text, text, timestamptz, bigint, integer)
    FROM PUBLIC;

-- album_photos: latest definition from 0001_init.sql (+ 0008). Changed: plpgsql, one query
-- per kind, each an index range scan of the album's members from the keyset on
-- (photo_albums_member / landmark_matches_member), joined to photos for the page only.
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
    -- Merged with 0011: every rank, less the rows the owner corrected, merged with the
    -- owner's adds (few: a range of photo_corrections_added), each side cut at p_limit.
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
            ) x JOIN photos v ON v.id = x.photo_id
            WHERE v.status = 'tagged'
            ORDER BY x.sort_at DESC, x.photo_id DESC
            LIMIT p_limit;
    ELSIF p_kind = 'landmark' THEN
        RETURN QUERY
            SELECT v.id, v.bucket, v.key, x.sort_at, v.gps_lat, v.gps_lon, x.score
            FROM (
                (SELECT m.photo_id, m.sort_at, m.score FROM landmark_matches m
                 WHERE m.owner = p_owner
                   AND m.release = (SELECT r.version FROM releases r WHERE r.status = 'active')
                   AND m.landmark_id = p_album
                   AND (m.sort_at, m.photo_id) < (after_sort, after_id)
                   AND NOT EXISTS (SELECT FROM photo_corrections c
                                   WHERE c.owner = m.owner AND c.photo_id = m.photo_id
                                     AND c.kind = 'landmark' AND c.label = m.landmark_id)
                 ORDER BY m.sort_at DESC, m.photo_id DESC LIMIT p_limit)
                UNION ALL
                (SELECT a.photo_id, a.sort_at, NULL::real FROM sightline_album_adds(
                     p_owner, 'landmark', p_album, after_sort, after_id, p_limit) a)
            ) x JOIN photos v ON v.id = x.photo_id
            WHERE v.status = 'tagged'
            ORDER BY x.sort_at DESC, x.photo_id DESC
            LIMIT p_limit;
    END IF;
END
$$;
