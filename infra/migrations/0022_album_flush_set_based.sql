-- 0022: a batch that only adds album members updates their summaries in one statement
-- (the write path, issue 13).
--
-- sightline_album_flush() (0012) applied the queued member changes one album at a time:
-- one sightline_album_adjust() call per album, each looking up the photos removed from that
-- album with a scan of the whole queue. A worker batch of 64 new photos touches about a
-- hundred (owner, album) pairs, and keeping their summaries cost a quarter of the batch's
-- write time (`sightline bench writes`: 4,012 -> 5,099 and 3,805 -> 5,490 rows/s with the
-- summary triggers off, in two rounds of one run).
--
-- When every queued change only adds members (no removal, recount or negative count; what
-- a batch of new photos queues), the changes are now applied by one upsert that does what
-- sightline_album_adjust() does per album, in the same (owner, kind, release, album) order,
-- so writers still lock summary rows in one order. An album whose summary is left with no
-- cover has it looked up, as adjust() does. Any other queue takes the loop of 0012 as it
-- was: that function is kept whole under the name sightline_album_flush_each().
ALTER FUNCTION sightline_album_flush() RENAME TO sightline_album_flush_each;

CREATE FUNCTION sightline_album_flush() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM set_config('sightline.album_defer', 'off', true);
    IF to_regclass('pg_temp.sightline_album_deltas') IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM pg_temp.sightline_album_deltas d
               WHERE d.recount OR d.removed IS NOT NULL OR d.photos < 0 OR d.untrained < 0) THEN
        PERFORM sightline_album_flush_each();  -- 0012's loop, one album at a time
        RETURN;
    END IF;
    FOR r IN
        INSERT INTO album_summaries AS s (owner, kind, release, album, photos, untrained,
                                          cover_sort_at, cover_photo_id)
        SELECT d.owner, d.kind, d.release, d.album, sum(d.photos)::bigint,
               sum(d.untrained)::bigint,
               (array_agg(d.cover_sort_at ORDER BY d.cover_sort_at DESC NULLS LAST,
                          d.cover_photo_id DESC))[1],
               (array_agg(d.cover_photo_id ORDER BY d.cover_sort_at DESC NULLS LAST,
                          d.cover_photo_id DESC))[1]
        FROM pg_temp.sightline_album_deltas d
        GROUP BY d.owner, d.kind, d.release, d.album
        ORDER BY d.owner, d.kind, d.release, d.album  -- the lock order
        ON CONFLICT (owner, kind, release, album) DO UPDATE SET
            photos = s.photos + EXCLUDED.photos,
            untrained = s.untrained + EXCLUDED.untrained,
            -- as sightline_album_adjust(): a newer cover replaces the current one
            cover_sort_at = CASE WHEN EXCLUDED.cover_photo_id IS NOT NULL
                                      AND (s.cover_photo_id IS NULL
                                           OR (EXCLUDED.cover_sort_at, EXCLUDED.cover_photo_id)
                                              > (s.cover_sort_at, s.cover_photo_id))
                                 THEN EXCLUDED.cover_sort_at ELSE s.cover_sort_at END,
            cover_photo_id = CASE WHEN EXCLUDED.cover_photo_id IS NOT NULL
                                       AND (s.cover_photo_id IS NULL
                                            OR (EXCLUDED.cover_sort_at, EXCLUDED.cover_photo_id)
                                               > (s.cover_sort_at, s.cover_photo_id))
                                  THEN EXCLUDED.cover_photo_id ELSE s.cover_photo_id END
        RETURNING s.owner, s.kind, s.release, s.album, s.cover_photo_id
    LOOP
        IF r.cover_photo_id IS NULL THEN  -- adjust() by nothing looks the cover up
            PERFORM sightline_album_adjust(r.owner, r.kind, r.release, r.album, 0, 0, NULL,
                                           NULL);
        END IF;
    END LOOP;
    DELETE FROM pg_temp.sightline_album_deltas;
END
$$;
