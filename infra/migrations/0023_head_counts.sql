-- 0023: tagged photos per model version and head provenance, kept as counters (issue 16).
--
-- `sightline status` prints how many tagged photos each model version and each head's
-- provenance (scene_trained, embedding_trained, 0010) account for. It counted them with a
-- GROUP BY over every tagged photo: `sightline bench albums` measured `status_report_ms`
-- 116.8 at 1,000,000 photos (a full scan; minutes at 10^9), where 0012 had brought the
-- status counts themselves to a read of a few counter rows. Inserts and deletes are counted
-- per statement from the transition tables the status counters already read (0018); updates by a
-- row trigger that fires only when a tagged photo's status, model version or head
-- provenance changes (a re-tag by the same model changes none of them).
--
-- Each session writes its own counter rows: a slot it holds with a session advisory lock
-- for as long as it lives (sightline_counter_slot()). Slots shared by backends (pid % 64,
-- as photo_status_counts had them) let two writers re-tagging photos of different old model
-- versions lock the same two rows in opposite orders: a deadlock, found by a trial of this
-- migration before it landed. The status counters had the same flaw (two writers changing
-- statuses in opposite directions), so they take the session's slot too. With a slot of its
-- own no session ever waits on another's counter rows. 1,024 slots; a 1,025th concurrent
-- writer shares slot 1,024. (Rows written under the old pid % 64 slots stay and are summed.)
-- photo_head_counts holds at most one row per (model version, provenance) and slot.
CREATE TABLE photo_head_counts (
    model_version     text,
    scene_trained     boolean,
    embedding_trained boolean,
    slot              smallint NOT NULL,
    photos            bigint NOT NULL DEFAULT 0,
    -- NULL is a value here (a photo tagged before its provenance was recorded)
    CONSTRAINT photo_head_counts_key
        UNIQUE NULLS NOT DISTINCT (model_version, scene_trained, embedding_trained, slot)
);

-- This session's slot: the one it already holds, else the first free one, held with a
-- session advisory lock (released when the session ends, so the slot is reused then).
CREATE FUNCTION sightline_counter_slot() RETURNS smallint LANGUAGE plpgsql AS $$
DECLARE
    slot smallint := nullif(current_setting('sightline.counter_slot', true), '')::smallint;
BEGIN
    -- checked already in this transaction (the mark is transaction-local)
    IF slot IS NOT NULL
       AND current_setting('sightline.counter_slot_checked', true) IS NOT DISTINCT FROM 'on' THEN
        RETURN slot;
    END IF;
    -- Still held? A client's pg_advisory_unlock_all() releases it and keeps the setting.
    -- Released and taken again, so the session's hold count stays one; if another session
    -- takes it in between, this one takes another below.
    IF slot = 1024 OR (pg_advisory_unlock(1936487524, slot)
                       AND pg_try_advisory_lock(1936487524, slot)) THEN
        PERFORM set_config('sightline.counter_slot_checked', 'on', true);
        RETURN slot;
    END IF;
    slot := NULL;
    -- held already (the setting is undone when a transaction that set it rolls back; the
    -- session lock is not)
    SELECT l.objid::text::smallint INTO slot FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
      AND l.classid = 1936487524::oid AND l.objsubid = 2  -- 1936487524: 'sltd' as an int4
    ORDER BY 1 LIMIT 1;
    IF slot IS NULL THEN
        FOR s IN 0..1023 LOOP
            IF pg_try_advisory_lock(1936487524, s) THEN
                slot := s;
                EXIT;
            END IF;
        END LOOP;
    END IF;
    slot := coalesce(slot, 1024);
    PERFORM set_config('sightline.counter_slot', slot::text, false);
    PERFORM set_config('sightline.counter_slot_checked', 'on', true);
    RETURN slot;
END
$$;

-- Inserts and deletes, per statement: one function for both (0018 had two near-copies),
-- the transition table named alike on either trigger and the sign taken from the event.
CREATE FUNCTION sightline_status_rows_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO photo_status_counts AS c (status, slot, photos)
        SELECT status, sightline_counter_slot(), sign * count(*) FROM status_rows GROUP BY 1
    ON CONFLICT (status, slot) DO UPDATE SET photos = c.photos + EXCLUDED.photos;
    INSERT INTO photo_head_counts AS c (model_version, scene_trained, embedding_trained, slot,
                                        photos)
        SELECT model_version, scene_trained, embedding_trained, sightline_counter_slot(),
               sign * count(*)
        FROM status_rows WHERE status = 'tagged' GROUP BY 1, 2, 3
    ON CONFLICT ON CONSTRAINT photo_head_counts_key
        DO UPDATE SET photos = c.photos + EXCLUDED.photos;
    RETURN NULL;
END
$$;
DROP TRIGGER photos_status_count_ins ON photos;
DROP TRIGGER photos_status_count_del ON photos;
CREATE TRIGGER photos_status_count_ins AFTER INSERT ON photos
    REFERENCING NEW TABLE AS status_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_status_rows_changed();
CREATE TRIGGER photos_status_count_del AFTER DELETE ON photos
    REFERENCING OLD TABLE AS status_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sightline_status_rows_changed();
DROP FUNCTION sightline_status_rows_added(), sightline_status_rows_removed();

-- changed (0023): the status counters' row trigger (0012) takes the session's slot
CREATE OR REPLACE FUNCTION sightline_status_count(p_status text, p_delta bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO photo_status_counts AS c (status, slot, photos)
    VALUES (p_status, sightline_counter_slot(), p_delta)
    ON CONFLICT (status, slot) DO UPDATE SET photos = c.photos + p_delta
$$;

CREATE FUNCTION sightline_head_count(p_model text, p_scene boolean, p_embedding boolean,
                                     p_delta bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO photo_head_counts AS c (model_version, scene_trained, embedding_trained, slot,
                                        photos)
    VALUES (p_model, p_scene, p_embedding, sightline_counter_slot(), p_delta)
    ON CONFLICT ON CONSTRAINT photo_head_counts_key
        DO UPDATE SET photos = c.photos + p_delta
$$;
CREATE FUNCTION sightline_heads_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'tagged' THEN
        PERFORM sightline_head_count(OLD.model_version, OLD.scene_trained,
                                     OLD.embedding_trained, -1);
    END IF;
    IF NEW.status = 'tagged' THEN
        PERFORM sightline_head_count(NEW.model_version, NEW.scene_trained,
                                     NEW.embedding_trained, 1);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER photos_head_count_upd
    AFTER UPDATE OF status, model_version, scene_trained, embedding_trained ON photos
    FOR EACH ROW WHEN ((OLD.status = 'tagged' OR NEW.status = 'tagged')
                       AND (OLD.status, OLD.model_version, OLD.scene_trained,
                            OLD.embedding_trained)
                           IS DISTINCT FROM (NEW.status, NEW.model_version, NEW.scene_trained,
                                             NEW.embedding_trained))
    EXECUTE FUNCTION sightline_heads_changed();

-- TRUNCATE skips row and statement triggers on rows: empty both counters with it. And the
-- album summaries (added, 0023): a truncate of photos takes every tag row with it, but the
-- cascade reaches the tag tables' partitions (0019's keys are partition to partition), not
-- the parents whose TRUNCATE triggers would empty them, so `TRUNCATE photos CASCADE` left
-- every album counted (found by a trial).
CREATE OR REPLACE FUNCTION sightline_status_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM photo_status_counts;
    DELETE FROM photo_head_counts;  -- added (0023)
    DELETE FROM album_summaries;  -- added (0023)
    RETURN NULL;
END
$$;

CREATE FUNCTION sightline_head_counts_rebuild() RETURNS void LANGUAGE sql AS $$
    DELETE FROM photo_head_counts;
    INSERT INTO photo_head_counts (model_version, scene_trained, embedding_trained, slot,
                                   photos)
        SELECT model_version, scene_trained, embedding_trained, 0, count(*)
        FROM photos WHERE status = 'tagged' GROUP BY 1, 2, 3;
$$;
SELECT sightline_head_counts_rebuild();
