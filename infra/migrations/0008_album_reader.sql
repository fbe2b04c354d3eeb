-- A role for album UIs that can call the album functions and nothing else: no table, view or
-- sequence is readable to it, so "every album query takes the owner" is enforced by the
-- database, not only by convention. Grant it to the UI's login role:
--   CREATE ROLE album_ui LOGIN PASSWORD '...' IN ROLE sightline_album_reader;
-- The functions run with their owner's rights (SECURITY DEFINER) and a fixed search_path, so
-- a caller cannot shadow the tables they read with objects of its own.

-- Roles belong to the whole cluster: another database on this server may have made it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sightline_album_reader') THEN
        CREATE ROLE sightline_album_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- made at the same moment by a migration in another database
END
$$;

ALTER FUNCTION scene_albums(text) SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION landmark_albums(text) SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION album_photos(text, text, text, timestamptz, bigint, integer)
    SECURITY DEFINER SET search_path = public, pg_temp;

-- Definer-rights functions are callable only by those meant to call them.
REVOKE EXECUTE ON FUNCTION scene_albums(text), landmark_albums(text),
    album_photos(text, text, text, timestamptz, bigint, integer) FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO sightline_album_reader;
GRANT EXECUTE ON FUNCTION scene_albums(text), landmark_albums(text),
    album_photos(text, text, text, timestamptz, bigint, integer) TO sightline_album_reader;
