-- Albums people trust (issue 15): corrections that no re-tag undoes, several albums per
-- photo, labels in the user's language, albums in the order photos were taken.
--
-- Album membership lives in ONE place, the view album_membership: scene_albums,
-- landmark_albums and album_photos read it, and so should anything that summarises albums.

-- ------------------------------------------------------------------ 5. the sort key
-- The instant a photo was taken; else the camera's wall clock read as UTC (most cameras
-- write no offset, and a fixed rule keeps a library in shooting order, hours off at worst);
-- else the object's upload time from its event; processing time only as a last resort, so a
-- backfill does not pile a whole library at the backfill date.
CREATE FUNCTION sightline_sort_at(taken_at timestamptz, taken_at_local timestamp,
                                  event_time timestamptz, created_at timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(taken_at, timezone('UTC', taken_at_local), event_time, created_at)
$$;

-- Changed from 0001: sort_at follows the rule above (was coalesce(taken_at, created_at)).
-- The columns are listed, not p.*, so a column added to photos later does not shift them.
CREATE OR REPLACE VIEW visible_photos AS
    SELECT p.id, p.owner, p.bucket, p.key, p.version_id, p.etag, p.size, p.sequencer,
           p.event_time, p.status, p.error, p.attempts, p.taken_at, p.taken_at_local,
           p.gps_lat, p.gps_lon, p.width, p.height, p.camera, p.model_version,
           p.model_trained, p.embedding, p.scene_probs, p.indoor, p.created_at, p.updated_at,
           sightline_sort_at(p.taken_at, p.taken_at_local, p.event_time, p.created_at) AS sort_at,
           p.scene_trained, p.embedding_trained  -- 0010: provenance per head
    FROM photos p WHERE p.status = 'tagged';

-- Keyset pages walk (owner, sort_at, id) backwards: the index has the same key.
DROP INDEX IF EXISTS photos_owner_sort;
CREATE INDEX photos_owner_sort_at ON photos
    (owner, sightline_sort_at(taken_at, taken_at_local, event_time, created_at) DESC, id DESC)
    WHERE status = 'tagged';

-- ------------------------------------------------------------------ 2. several albums
-- photo_albums now holds exactly the albums a photo is filed in (rank 1 = best; at most K,
-- each past its album's threshold). Before 0011 only rank 1 was an album and ranks 2-3 were
-- scores no query read: drop them, `sightline retag --scene-map` re-files from scene_probs.
DELETE FROM photo_albums WHERE rank > 1;
DROP INDEX IF EXISTS photo_albums_album;
CREATE INDEX photo_albums_label ON photo_albums (album, photo_id);

-- ------------------------------------------------------------------ 1. corrections
-- A correction is a fact about a photo, kept apart from every table a re-tag, re-map or
-- re-embed rewrites; the album view applies it when it reads. One row per photo and label:
-- the latest verdict wins.
CREATE TABLE photo_corrections (
    owner        text NOT NULL,
    photo_id     bigint NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('scene', 'landmark')),
    label        text NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    verdict      text NOT NULL CHECK (verdict IN ('hide', 'add')),
    corrected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, photo_id, kind, label)
);
CREATE INDEX photo_corrections_added ON photo_corrections (owner, kind, label)
    WHERE verdict = 'add';

-- ------------------------------------------------------------------ 4. label catalogue
-- Display names of scene album labels per locale (the stable id stays the label).
-- Shipped for en and ru from models/data/album_labels.csv (a test keeps the two equal).
CREATE TABLE scene_label_names (
    label  text NOT NULL,
    locale text NOT NULL,
    name   text NOT NULL,
    PRIMARY KEY (label, locale)
);

-- Landmark names per locale, from a release's optional name_<locale> columns.
CREATE TABLE landmark_names (
    release     text NOT NULL,
    landmark_id text NOT NULL,
    locale      text NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (release, landmark_id, locale),
    FOREIGN KEY (release, landmark_id) REFERENCES landmarks (release, landmark_id)
        ON DELETE CASCADE
);

INSERT INTO scene_label_names (label, locale, name) VALUES
    ('airplane', 'en', 'Airplane'),
    ('airplane', 'ru', 'Самолёт'),
    ('airport', 'en', 'Airport'),
    ('airport', 'ru', 'Аэропорт'),
    ('amusement arcade', 'en', 'Amusement arcade'),
    ('amusement arcade', 'ru', 'Игровые автоматы'),
    ('amusement park', 'en', 'Amusement park'),
    ('amusement park', 'ru', 'Парк развлечений'),
    ('aquarium', 'en', 'Aquarium'),
    ('aquarium', 'ru', 'Аквариум'),
    ('art studio', 'en', 'Art studio'),
    ('art studio', 'ru', 'Мастерская художника'),
    ('balcony', 'en', 'Balcony'),
    ('balcony', 'ru', 'Балкон'),
    ('banquet hall', 'en', 'Banquet hall'),
    ('banquet hall', 'ru', 'Банкетный зал'),
    ('bathroom', 'en', 'Bathroom'),
    ('bathroom', 'ru', 'Ванная'),
    ('beauty salon', 'en', 'Beauty salon'),
    ('beauty salon', 'ru', 'Салон красоты'),
    ('bedroom', 'en', 'Bedroom'),
    ('bedroom', 'ru', 'Спальня'),
    ('boat', 'en', 'Boat'),
    ('boat', 'ru', 'Лодка'),
    ('bowling alley', 'en', 'Bowling alley'),
    ('bowling alley', 'ru', 'Боулинг'),
    ('bridge', 'en', 'Bridge'),
    ('bridge', 'ru', 'Мост'),
    ('cabin', 'en', 'Cabin'),
    ('cabin', 'ru', 'Хижина'),
    ('camping', 'en', 'Camping'),
    ('camping', 'ru', 'Кемпинг'),
    ('canal', 'en', 'Canal'),
    ('canal', 'ru', 'Канал'),
    ('canyon', 'en', 'Canyon'),
    ('canyon', 'ru', 'Каньон'),
    ('car', 'en', 'Car'),
    ('car', 'ru', 'Автомобиль'),
    ('castle & palace', 'en', 'Castle & palace'),
    ('castle & palace', 'ru', 'Замки и дворцы'),
    ('cave', 'en', 'Cave'),
    ('cave', 'ru', 'Пещера'),
    ('cemetery', 'en', 'Cemetery'),
    ('cemetery', 'ru', 'Кладбище'),
    ('church & temple', 'en', 'Church & temple'),
    ('church & temple', 'ru', 'Церкви и храмы'),
    ('city', 'en', 'City'),
    ('city', 'ru', 'Город'),
    ('conference', 'en', 'Conference'),
    ('conference', 'ru', 'Конференция'),
    ('construction site', 'en', 'Construction site'),
    ('construction site', 'ru', 'Стройка'),
    ('dam', 'en', 'Dam'),
    ('dam', 'ru', 'Плотина'),
    ('desert', 'en', 'Desert'),
    ('desert', 'ru', 'Пустыня'),
    ('dining room', 'en', 'Dining room'),
    ('dining room', 'ru', 'Столовая'),
    ('farm', 'en', 'Farm'),
    ('farm', 'ru', 'Ферма'),
    ('field', 'en', 'Field'),
    ('field', 'ru', 'Поле'),
    ('forest', 'en', 'Forest'),
    ('forest', 'ru', 'Лес'),
    ('fountain', 'en', 'Fountain'),
    ('fountain', 'ru', 'Фонтан'),
    ('garden', 'en', 'Garden'),
    ('garden', 'ru', 'Сад'),
    ('golf course', 'en', 'Golf course'),
    ('golf course', 'ru', 'Поле для гольфа'),
    ('gym', 'en', 'Gym'),
    ('gym', 'ru', 'Спортзал'),
    ('harbor', 'en', 'Harbor'),
    ('harbor', 'ru', 'Гавань'),
    ('home', 'en', 'Home'),
    ('home', 'ru', 'Дом'),
    ('hospital', 'en', 'Hospital'),
    ('hospital', 'ru', 'Больница'),
    ('hot spring', 'en', 'Hot spring'),
    ('hot spring', 'ru', 'Горячий источник'),
    ('hotel', 'en', 'Hotel'),
    ('hotel', 'ru', 'Гостиница'),
    ('house', 'en', 'House'),
    ('house', 'ru', 'Здание'),
    ('ice rink', 'en', 'Ice rink'),
    ('ice rink', 'ru', 'Каток'),
    ('industrial area', 'en', 'Industrial area'),
    ('industrial area', 'ru', 'Промзона'),
    ('kids room', 'en', 'Kids room'),
    ('kids room', 'ru', 'Детская'),
    ('kitchen', 'en', 'Kitchen'),
    ('kitchen', 'ru', 'Кухня'),
    ('lake & river', 'en', 'Lake & river'),
    ('lake & river', 'ru', 'Озёра и реки'),
    ('library', 'en', 'Library'),
    ('library', 'ru', 'Библиотека'),
    ('lighthouse', 'en', 'Lighthouse'),
    ('lighthouse', 'ru', 'Маяк'),
    ('living room', 'en', 'Living room'),
    ('living room', 'ru', 'Гостиная'),
    ('lobby', 'en', 'Lobby'),
    ('lobby', 'ru', 'Вестибюль'),
    ('market', 'en', 'Market'),
    ('market', 'ru', 'Рынок'),
    ('monument', 'en', 'Monument'),
    ('monument', 'ru', 'Памятник'),
    ('mountains', 'en', 'Mountains'),
    ('mountains', 'ru', 'Горы'),
    ('museum', 'en', 'Museum'),
    ('museum', 'ru', 'Музей'),
    ('music studio', 'en', 'Music studio'),
    ('music studio', 'ru', 'Студия звукозаписи'),
    ('nightclub', 'en', 'Nightclub'),
    ('nightclub', 'ru', 'Ночной клуб'),
    ('office', 'en', 'Office'),
    ('office', 'ru', 'Офис'),
    ('park', 'en', 'Park'),
    ('park', 'ru', 'Парк'),
    ('parking', 'en', 'Parking'),
    ('parking', 'ru', 'Парковка'),
    ('playground', 'en', 'Playground'),
    ('playground', 'ru', 'Детская площадка'),
    ('racetrack', 'en', 'Racetrack'),
    ('racetrack', 'ru', 'Ипподром и трек'),
    ('railway', 'en', 'Railway'),
    ('railway', 'ru', 'Железная дорога'),
    ('restaurant', 'en', 'Restaurant'),
    ('restaurant', 'ru', 'Ресторан'),
    ('road', 'en', 'Road'),
    ('road', 'ru', 'Дорога'),
    ('ruins', 'en', 'Ruins'),
    ('ruins', 'ru', 'Руины'),
    ('school', 'en', 'School'),
    ('school', 'ru', 'Школа'),
    ('sea & beach', 'en', 'Sea & beach'),
    ('sea & beach', 'ru', 'Море и пляж'),
    ('shop food', 'en', 'Food shop'),
    ('shop food', 'ru', 'Продуктовый магазин'),
    ('shop non-food', 'en', 'Shop'),
    ('shop non-food', 'ru', 'Магазин'),
    ('ski resort', 'en', 'Ski resort'),
    ('ski resort', 'ru', 'Горнолыжный курорт'),
    ('sky', 'en', 'Sky'),
    ('sky', 'ru', 'Небо'),
    ('snow & ice', 'en', 'Snow & ice'),
    ('snow & ice', 'ru', 'Снег и лёд'),
    ('spa', 'en', 'Spa'),
    ('spa', 'ru', 'Спа'),
    ('sports field', 'en', 'Sports field'),
    ('sports field', 'ru', 'Спортивная площадка'),
    ('square', 'en', 'Square'),
    ('square', 'ru', 'Площадь'),
    ('stadium', 'en', 'Stadium'),
    ('stadium', 'ru', 'Стадион'),
    ('station', 'en', 'Station'),
    ('station', 'ru', 'Вокзал'),
    ('street', 'en', 'Street'),
    ('street', 'ru', 'Улица'),
    ('swimming pool', 'en', 'Swimming pool'),
    ('swimming pool', 'ru', 'Бассейн'),
    ('theater', 'en', 'Theater'),
    ('theater', 'ru', 'Театр'),
    ('tower', 'en', 'Tower'),
    ('tower', 'ru', 'Башня'),
    ('underwater', 'en', 'Underwater'),
    ('underwater', 'ru', 'Под водой'),
    ('vehicle interior', 'en', 'Vehicle interior'),
    ('vehicle interior', 'ru', 'В салоне транспорта'),
    ('village', 'en', 'Village'),
    ('village', 'ru', 'Деревня'),
    ('vineyard', 'en', 'Vineyard'),
    ('vineyard', 'ru', 'Виноградник'),
    ('waterfall', 'en', 'Waterfall'),
    ('waterfall', 'ru', 'Водопад'),
    ('waterfront', 'en', 'Waterfront'),
    ('waterfront', 'ru', 'Набережная'),
    ('wetland', 'en', 'Wetland'),
    ('wetland', 'ru', 'Болото'),
    ('windmill', 'en', 'Windmill'),
    ('windmill', 'ru', 'Ветряная мельница');

-- 'ru-RU', 'ru_RU', 'RU' -> the locales to try, best first: exact, language, English.
CREATE FUNCTION sightline_locales(p_locale text)
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[lower(replace(coalesce(p_locale, 'en'), '_', '-')),
                 split_part(lower(replace(coalesce(p_locale, 'en'), '_', '-')), '-', 1),
                 'en']
$$;

-- The display name of a scene album label in a locale; English, then the label itself,
-- when no translation exists.
CREATE FUNCTION scene_label_name(p_label text, p_locale text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT n.name FROM scene_label_names n
                JOIN unnest(sightline_locales(p_locale)) WITH ORDINALITY AS l(locale, pref)
                  ON n.locale = l.locale
         WHERE n.label = p_label ORDER BY l.pref LIMIT 1),
        p_label)
$$;

-- A landmark's name in a locale; the release's name column (its default language), then
-- the id, when no translation exists.
CREATE FUNCTION landmark_name(p_release text, p_landmark_id text, p_locale text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT n.name FROM landmark_names n
                JOIN unnest(sightline_locales(p_locale)) WITH ORDINALITY AS l(locale, pref)
                  ON n.locale = l.locale
         WHERE n.release = p_release AND n.landmark_id = p_landmark_id
         ORDER BY l.pref LIMIT 1),
        (SELECT l.name FROM landmarks l
         WHERE l.release = p_release AND l.landmark_id = p_landmark_id),
        p_landmark_id)
$$;

-- ------------------------------------------------------------------ album membership
-- Every (owner, kind, label, photo) in an album, after corrections: the albums the photo
-- is filed in by the scene map, its matches in the active release, minus the labels its
-- owner hid, plus the labels its owner added. Nothing that rewrites photo_albums or
-- landmark_matches touches photo_corrections, so a correction outlives every re-tag.
-- score is NULL for a label the owner added; release is the active release for landmarks.
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

-- ------------------------------------------------------------------ album SQL for UIs
-- Redefined from 0001 (+ 0008's definer rights, restated because CREATE OR REPLACE resets
-- them): same signatures and columns, now read through album_membership, so a photo is in
-- every album it is filed in and corrections apply.
CREATE OR REPLACE FUNCTION scene_albums(p_owner text)
RETURNS TABLE (album text, photos bigint, cover_photo_id bigint, untrained boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT m.label, count(*),
           (array_agg(m.photo_id ORDER BY m.sort_at DESC, m.photo_id DESC))[1],
           bool_or(NOT coalesce(m.model_trained, false))
    FROM album_membership m
    WHERE m.owner = p_owner AND m.kind = 'scene'
    GROUP BY m.label
    ORDER BY count(*) DESC, m.label
$$;

CREATE OR REPLACE FUNCTION landmark_albums(p_owner text)
RETURNS TABLE (country text, city text, landmark_id text, name text, photos bigint,
               cover_photo_id bigint, release text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce(l.country, ''), coalesce(l.city, ''), m.label,
           coalesce(l.name, m.label), count(*),
           (array_agg(m.photo_id ORDER BY m.sort_at DESC, m.photo_id DESC))[1], m.release
    FROM album_membership m
    LEFT JOIN landmarks l ON l.release = m.release AND l.landmark_id = m.label
    WHERE m.owner = p_owner AND m.kind = 'landmark'
    GROUP BY l.country, l.city, m.label, l.name, m.release
    ORDER BY 1, 2, count(*) DESC, 4
$$;

CREATE OR REPLACE FUNCTION album_photos(p_owner text, p_kind text, p_album text,
                                        p_after_sort timestamptz DEFAULT NULL,
                                        p_after_id bigint DEFAULT NULL,
                                        p_limit integer DEFAULT 50)
RETURNS TABLE (photo_id bigint, bucket text, key text, sort_at timestamptz,
               gps_lat double precision, gps_lon double precision, score real)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT v.id, v.bucket, v.key, v.sort_at, v.gps_lat, v.gps_lon, m.score
    FROM visible_photos v
    -- The owner's photos newest first (photos_owner_sort_at), one probe of the membership
    -- view each, so a page of a large album stops after p_limit hits, as 0001's did. The
    -- LIMIT 1 keeps the planner from flattening the probe into a join of the whole album.
    JOIN LATERAL (SELECT m.score FROM album_membership m
                  WHERE m.photo_id = v.id AND m.owner = v.owner
                    AND m.kind = p_kind AND m.label = p_album
                  LIMIT 1) m ON true
    WHERE v.owner = p_owner
      AND (p_after_id IS NULL OR (v.sort_at, v.id) < (p_after_sort, p_after_id))
    ORDER BY v.sort_at DESC, v.id DESC
    LIMIT p_limit
$$;

-- New overloads with a locale ('en', 'ru', 'ru-RU', ...): the display name beside the
-- stable id; a missing translation falls back to English.
CREATE FUNCTION scene_albums(p_owner text, p_locale text)
RETURNS TABLE (album text, name text, photos bigint, cover_photo_id bigint, untrained boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT s.album, scene_label_name(s.album, p_locale), s.photos, s.cover_photo_id,
           s.untrained
    FROM scene_albums(p_owner) s
$$;

CREATE FUNCTION landmark_albums(p_owner text, p_locale text)
RETURNS TABLE (country text, city text, landmark_id text, name text, photos bigint,
               cover_photo_id bigint, release text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT a.country, a.city, a.landmark_id,
           CASE WHEN a.release IS NULL THEN a.name
                ELSE landmark_name(a.release, a.landmark_id, p_locale) END,
           a.photos, a.cover_photo_id, a.release
    FROM landmark_albums(p_owner) a
$$;

-- ------------------------------------------------------------------ corrections for UIs
-- A role for album UIs that may record corrections and nothing else, made like
-- sightline_album_reader (0008): no table is writable or readable to it; three functions
-- with their owner's rights and a fixed search_path, each refusing a photo the given owner
-- does not own.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sightline_album_writer') THEN
        CREATE ROLE sightline_album_writer NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- made at the same moment by a migration in another database
END
$$;

-- Record a verdict; raises 42501 for a photo the owner does not own (or that does not
-- exist: the two are not told apart), 22023 for a bad kind, label or unknown landmark.
CREATE FUNCTION sightline_correct(p_owner text, p_photo_id bigint, p_kind text,
                                  p_label text, p_verdict text)
RETURNS TABLE (photo_id bigint, kind text, label text, verdict text,
               corrected_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('scene', 'landmark') THEN
        RAISE EXCEPTION 'kind must be scene or landmark, not %', coalesce(p_kind, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_label IS NULL OR length(btrim(p_label)) = 0 OR length(p_label) > 200 THEN
        RAISE EXCEPTION 'label must be 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM photos p WHERE p.id = p_photo_id AND p.owner = p_owner) THEN
        RAISE EXCEPTION 'photo % is not a photo of this owner', p_photo_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_verdict = 'add' AND p_kind = 'landmark'
       AND NOT EXISTS (SELECT FROM landmarks l WHERE l.landmark_id = p_label) THEN
        RAISE EXCEPTION 'no landmark % in any release', p_label
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    INSERT INTO photo_corrections AS c (owner, photo_id, kind, label, verdict)
    VALUES (p_owner, p_photo_id, p_kind, p_label, p_verdict)
    ON CONFLICT (owner, photo_id, kind, label)
        DO UPDATE SET verdict = EXCLUDED.verdict, corrected_at = now()
    RETURNING c.photo_id, c.kind, c.label, c.verdict, c.corrected_at;
END
$$;

CREATE FUNCTION hide_from_album(p_owner text, p_photo_id bigint, p_kind text, p_label text)
RETURNS TABLE (photo_id bigint, kind text, label text, verdict text,
               corrected_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM sightline_correct(p_owner, p_photo_id, p_kind, p_label, 'hide')
$$;

CREATE FUNCTION add_to_album(p_owner text, p_photo_id bigint, p_kind text, p_label text)
RETURNS TABLE (photo_id bigint, kind text, label text, verdict text,
               corrected_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM sightline_correct(p_owner, p_photo_id, p_kind, p_label, 'add')
$$;

-- Forget the owner's verdict on one label of one photo; true when there was one. The
-- photo goes back to what the tagger says.
CREATE FUNCTION undo_correction(p_owner text, p_photo_id bigint, p_kind text, p_label text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    IF NOT EXISTS (SELECT FROM photos p WHERE p.id = p_photo_id AND p.owner = p_owner) THEN
        RAISE EXCEPTION 'photo % is not a photo of this owner', p_photo_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM photo_corrections c
    WHERE c.owner = p_owner AND c.photo_id = p_photo_id AND c.kind = p_kind
      AND c.label = p_label;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$$;

-- Definer-rights functions are callable only by those meant to call them.
REVOKE EXECUTE ON FUNCTION
    scene_albums(text, text), landmark_albums(text, text),
    sightline_locales(text), scene_label_name(text, text), landmark_name(text, text, text),
    sightline_correct(text, bigint, text, text, text),
    hide_from_album(text, bigint, text, text), add_to_album(text, bigint, text, text),
    undo_correction(text, bigint, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION scene_albums(text, text), landmark_albums(text, text)
    TO sightline_album_reader;
GRANT USAGE ON SCHEMA public TO sightline_album_writer;
GRANT EXECUTE ON FUNCTION hide_from_album(text, bigint, text, text),
    add_to_album(text, bigint, text, text), undo_correction(text, bigint, text, text)
    TO sightline_album_writer;
