-- sightline schema v1: photos, scenes, landmark releases, matches, album views.
CREATE EXTENSION IF NOT EXISTS vector;

-- Event order: S3 sequencers (right-padded hex, compared as strings) when both sides have
-- one, else the event time. An equal token is "not older", so redelivery re-applies.
CREATE FUNCTION sightline_not_older(new_seq text, new_time timestamptz,
                                    old_seq text, old_time timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN new_seq IS NOT NULL AND old_seq IS NOT NULL THEN new_seq >= old_seq
    WHEN new_time IS NOT NULL AND old_time IS NOT NULL THEN new_time >= old_time
    ELSE true
  END
$$;

CREATE TABLE photos (
    id            bigserial PRIMARY KEY,
    owner         text NOT NULL,
    bucket        text NOT NULL,
    key           text NOT NULL,
    version_id    text,
    etag          text,
    size          bigint,
    sequencer     text,          -- normalised: upper-case hex, right-padded
    event_time    timestamptz,
    status        text NOT NULL CHECK (status IN ('pending', 'tagged', 'failed', 'gone', 'deleted')),
    error         text,
    attempts      integer NOT NULL DEFAULT 0,
    taken_at      timestamptz,
    taken_at_local timestamp,    -- the camera's wall clock, when it gave no offset
    gps_lat       double precision CHECK (gps_lat BETWEEN -90 AND 90),
    gps_lon       double precision CHECK (gps_lon BETWEEN -180 AND 180),
    width         integer,
    height        integer,
    camera        text,
    model_version text,
    model_trained boolean,
    embedding     vector,
    scene_probs   real[],        -- the full probability vector: a new scene map needs no network
    indoor        real,          -- probability the scene is indoors
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bucket, key)
);
CREATE INDEX photos_owner_sort ON photos (owner, (coalesce(taken_at, created_at)) DESC, id DESC);
CREATE INDEX photos_status ON photos (status) WHERE status <> 'tagged';

-- Top fine classes per photo (rank 1 = best).
CREATE TABLE photo_scenes (
    photo_id    bigint NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
    rank        smallint NOT NULL,
    class_name  text NOT NULL,
    probability real NOT NULL,
    PRIMARY KEY (photo_id, rank)
);

-- Mapped album labels per photo (rank 1 = the album the photo is filed under).
CREATE TABLE photo_albums (
    photo_id  bigint NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
    rank      smallint NOT NULL,
    album     text NOT NULL,
    score     real NOT NULL,
    PRIMARY KEY (photo_id, rank)
);
CREATE INDEX photo_albums_album ON photo_albums (album) WHERE rank = 1;

CREATE TABLE releases (
    version         text PRIMARY KEY,
    embedding_dim   integer NOT NULL,
    model_version   text NOT NULL,
    thresholds      jsonb NOT NULL,
    manifest        jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'imported'
                    CHECK (status IN ('importing', 'imported', 'retagging', 'ready', 'active', 'retired')),
    retag_cursor    bigint NOT NULL DEFAULT 0,   -- last photo id re-matched: a killed re-tag resumes here
    imported_at     timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz
);
-- At most one active release: album views read it.
CREATE UNIQUE INDEX releases_one_active ON releases ((true)) WHERE status = 'active';

CREATE TABLE landmarks (
    release     text NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    landmark_id text NOT NULL,
    name        text NOT NULL,
    city        text NOT NULL DEFAULT '',
    country     text NOT NULL DEFAULT '',
    lat         double precision,
    lon         double precision,
    PRIMARY KEY (release, landmark_id)
);

CREATE TABLE centroids (
    id          bigserial PRIMARY KEY,
    release     text NOT NULL,
    landmark_id text NOT NULL,
    embedding   vector NOT NULL,
    FOREIGN KEY (release, landmark_id) REFERENCES landmarks (release, landmark_id) ON DELETE CASCADE
);
CREATE INDEX centroids_release ON centroids (release);

CREATE TABLE landmark_references (
    id          bigserial PRIMARY KEY,
    release     text NOT NULL,
    landmark_id text NOT NULL,
    embedding   vector NOT NULL,
    FOREIGN KEY (release, landmark_id) REFERENCES landmarks (release, landmark_id) ON DELETE CASCADE
);
CREATE INDEX landmark_references_release ON landmark_references (release);

CREATE TABLE landmark_matches (
    release     text NOT NULL,
    photo_id    bigint NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
    landmark_id text NOT NULL,
    score       real NOT NULL,
    PRIMARY KEY (release, photo_id, landmark_id),
    FOREIGN KEY (release, landmark_id) REFERENCES landmarks (release, landmark_id) ON DELETE CASCADE
);
CREATE INDEX landmark_matches_landmark ON landmark_matches (release, landmark_id);

-- ---------------------------------------------------------------- album SQL for UIs
-- Every album query takes the owner: one owner never reads another's photos.

CREATE VIEW visible_photos AS
    SELECT p.*, coalesce(p.taken_at, p.created_at) AS sort_at
    FROM photos p WHERE p.status = 'tagged';

-- Scene albums of one owner: album, photo count, newest photo as cover.
CREATE FUNCTION scene_albums(p_owner text)
RETURNS TABLE (album text, photos bigint, cover_photo_id bigint, untrained boolean)
LANGUAGE sql STABLE AS $$
    SELECT a.album, count(*),
           (array_agg(v.id ORDER BY v.sort_at DESC, v.id DESC))[1],
           bool_or(NOT coalesce(v.model_trained, false))
    FROM visible_photos v JOIN photo_albums a ON a.photo_id = v.id AND a.rank = 1
    WHERE v.owner = p_owner
    GROUP BY a.album
    ORDER BY count(*) DESC, a.album
$$;

-- Landmark albums of one owner under the active release, grouped by country and city.
CREATE FUNCTION landmark_albums(p_owner text)
RETURNS TABLE (country text, city text, landmark_id text, name text, photos bigint,
               cover_photo_id bigint, release text)
LANGUAGE sql STABLE AS $$
    SELECT l.country, l.city, l.landmark_id, l.name, count(*),
           (array_agg(v.id ORDER BY v.sort_at DESC, v.id DESC))[1], r.version
    FROM releases r
    JOIN landmark_matches m ON m.release = r.version
    JOIN landmarks l ON l.release = m.release AND l.landmark_id = m.landmark_id
    JOIN visible_photos v ON v.id = m.photo_id
    WHERE r.status = 'active' AND v.owner = p_owner
    GROUP BY l.country, l.city, l.landmark_id, l.name, r.version
    ORDER BY l.country, l.city, count(*) DESC, l.name
$$;

-- The photos of one album, newest first, keyset-paged: pass the last row's (sort_at, id)
-- to get the next page (NULLs for the first page).
CREATE FUNCTION album_photos(p_owner text, p_kind text, p_album text,
                             p_after_sort timestamptz DEFAULT NULL,
                             p_after_id bigint DEFAULT NULL,
                             p_limit integer DEFAULT 50)
RETURNS TABLE (photo_id bigint, bucket text, key text, sort_at timestamptz,
               gps_lat double precision, gps_lon double precision, score real)
LANGUAGE sql STABLE AS $$
    SELECT v.id, v.bucket, v.key, v.sort_at, v.gps_lat, v.gps_lon, s.score
    FROM visible_photos v
    JOIN LATERAL (
        SELECT a.score FROM photo_albums a
        WHERE p_kind = 'scene' AND a.photo_id = v.id AND a.rank = 1 AND a.album = p_album
        UNION ALL
        SELECT m.score FROM landmark_matches m JOIN releases r ON r.version = m.release
        WHERE p_kind = 'landmark' AND r.status = 'active'
          AND m.photo_id = v.id AND m.landmark_id = p_album
    ) s ON true
    WHERE v.owner = p_owner
      AND (p_after_id IS NULL OR (v.sort_at, v.id) < (p_after_sort, p_after_id))
    ORDER BY v.sort_at DESC, v.id DESC
    LIMIT p_limit
$$;
