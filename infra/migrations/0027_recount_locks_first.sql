-- sightline_album_recount (what a correction's flush calls) locks the album's summary row
-- before it counts. It counted first and then wrote the count over the row: a writer whose
-- delta for that album (a photo with an add re-tagged, a match deleted) was applied and not
-- yet committed held the row, and once it committed the recount wrote a count taken before
-- that change over it, so the change was lost for good (a trial: the owner's landmark adds
-- one photo short after concurrent writes and corrections). Counting after the lock, in a
-- statement of its own, sees every change committed by then; a change not yet applied is
-- applied later as a delta on top of the count, which does not hold it.
CREATE OR REPLACE FUNCTION sightline_album_recount(p_owner text, p_kind text, p_release text,
                                                   p_album text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n      bigint;
    u      bigint;
    c_sort timestamptz;
    c_id   bigint;
BEGIN
    INSERT INTO album_summaries (owner, kind, release, album) VALUES (p_owner, p_kind, p_release,
                                                                      p_album)
    ON CONFLICT (owner, kind, release, album) DO NOTHING;
    PERFORM FROM album_summaries
    WHERE owner = p_owner AND kind = p_kind AND release = p_release AND album = p_album
    FOR UPDATE;
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
    UPDATE album_summaries
    SET photos = n, untrained = u, cover_sort_at = c_sort, cover_photo_id = c_id
    WHERE owner = p_owner AND kind = p_kind AND release = p_release AND album = p_album;
END
$$;
