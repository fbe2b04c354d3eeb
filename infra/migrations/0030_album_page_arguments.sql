-- album_photos checks its paging arguments (latest definition from 0017_owner_partitions).
-- Changed: a negative p_limit raised PostgreSQL's bare "LIMIT must not be negative" and a
-- NULL one returned the whole album; a cursor with p_after_sort but no p_after_id returned
-- the previous page's last rows again (every row at that sort_at); an unknown p_kind
-- returned no rows, like an empty album. Each is now refused with one line naming the
-- argument (SQLSTATE 22023, invalid_parameter_value). Grants and SECURITY DEFINER stay
-- (CREATE OR REPLACE keeps a function's privileges).
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
    IF p_kind IS NULL OR p_kind NOT IN ('scene', 'landmark') THEN
        RAISE EXCEPTION 'album_photos: p_kind must be scene or landmark, not %',
            coalesce(to_json(left(p_kind, 60))::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_limit IS NULL OR p_limit < 0 THEN
        RAISE EXCEPTION 'album_photos: p_limit must be 0 or more, not %',
            coalesce(p_limit::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (p_after_sort IS NULL) <> (p_after_id IS NULL) THEN
        RAISE EXCEPTION 'album_photos: p_after_sort and p_after_id go together (the last '
            'row''s sort_at and photo_id), or neither for the first page'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
            ) x JOIN photos v ON v.owner = p_owner AND v.id = x.photo_id  -- changed
            WHERE v.status = 'tagged'
            ORDER BY x.sort_at DESC, x.photo_id DESC
            LIMIT p_limit;
    ELSIF p_kind = 'landmark' THEN
        RETURN QUERY
            SELECT v.id, v.bucket, v.key, x.sort_at, v.gps_lat, v.gps_lon, x.score
            FROM (
                (SELECT m.photo_id, m.sort_at, m.score, r.model_version
                 FROM releases r CROSS JOIN LATERAL (
                     SELECT m.photo_id, m.sort_at, m.score FROM landmark_matches m
                     WHERE m.owner = p_owner AND m.release = r.version
                       AND m.landmark_id = p_album
                       AND (m.sort_at, m.photo_id) < (after_sort, after_id)
                       AND NOT EXISTS (SELECT FROM photo_corrections c
                                       WHERE c.owner = m.owner AND c.photo_id = m.photo_id
                                         AND c.kind = 'landmark' AND c.label = m.landmark_id)
                     ORDER BY m.sort_at DESC, m.photo_id DESC LIMIT p_limit) m
                 WHERE r.status = 'active')
                UNION ALL
                (SELECT a.photo_id, a.sort_at, NULL::real, NULL::text FROM sightline_album_adds(
                     p_owner, 'landmark', p_album, after_sort, after_id, p_limit) a)
            ) x JOIN photos v ON v.owner = p_owner AND v.id = x.photo_id  -- changed
            WHERE v.status = 'tagged'
              AND (x.model_version IS NULL
                   OR coalesce(v.model_version, x.model_version) = x.model_version)
            ORDER BY x.sort_at DESC, x.photo_id DESC
            LIMIT p_limit;
    END IF;
END
$$;
