-- A correction (hide_from_album, add_to_album) takes the photo row FOR SHARE and refuses a
-- deleted photo. It only checked that the row existed, so (a trial found both):
-- - a correction of a tombstone (status 'deleted') was stored, and applied to the photo a
--   later upload at that key brings into the same row (0026 drops corrections when the
--   tombstone is written, not after);
-- - a correction committed while a worker wrote that photo could be missed by the worker's
--   album deltas (they decide "corrected or not" when their trigger runs) and counted twice,
--   or left on the tombstone that write made. The worker's upsert holds the photo row, so
--   with the lock the two now take turns.
-- A label is checked as a checkpoint's class names are (models/checkpoint.py); trials found
-- each of these accepted, each making an album beside the one it looks like, or a label an
-- album UI shows wrongly:
-- - white space around it (any white space Python's str.strip() removes);
-- - control characters anywhere (a newline, a tab, C1), line and paragraph separators, and
--   the bidirectional embeddings, overrides and isolates, which reorder what a UI shows;
-- - invisible characters at either end (format characters such as the zero-width space,
--   word joiner, BOM, soft hyphen, ZWNJ, ZWJ, tags; the Hangul and Braille blanks: "city"
--   + ZWSP was a second "city"), or a label of nothing else; the zero-width space, word
--   joiner, BOM and tags anywhere; inside a label ZWNJ, ZWJ and variation selectors stay
--   (Persian names, emoji sequences).
-- Error messages quote the label and kind as JSON, so each stays one line.
CREATE OR REPLACE FUNCTION sightline_correct(p_owner text, p_photo_id bigint, p_kind text,
                                             p_label text, p_verdict text)
RETURNS TABLE(photo_id bigint, kind text, label text, verdict text,
              corrected_at timestamp with time zone)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    st text;
    ws constant text := '[\s\u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]';
    -- invisible characters a label may not begin or end with
    cf constant text := '[\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200d\u2060-\u206f\u2800\u3164\ufeff\uffa0\ufff9-\ufffb\U0001d173-\U0001d17a\U000e0000-\U000e007f]';
    -- never anywhere (Cc, Zl, Zp, bidirectional controls)
    ctl constant text := '[\u0001-\u001f\u007f-\u009f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]';
    -- invisible anywhere, so "ci" + ZWSP + "ty" is no second "city" (ZWNJ, ZWJ and
    -- variation selectors stay inside: Persian names, emoji sequences)
    hidden constant text := '[\u200b\u2060\ufeff\U000e0000-\U000e007f]';
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('scene', 'landmark') THEN
        RAISE EXCEPTION 'kind must be scene or landmark, not %',
            coalesce(to_json(left(p_kind, 60))::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_label IS NULL OR length(btrim(p_label)) = 0 OR length(p_label) > 200 THEN
        RAISE EXCEPTION 'label must be 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- white space as Python's str.strip() sees it (a checkpoint's class names are checked so)
    IF p_label ~ ('^' || ws || '|' || ws || '$') THEN
        RAISE EXCEPTION 'label % has white space around it', to_json(left(p_label, 60))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_label ~ ctl THEN
        RAISE EXCEPTION 'label % has a control character', to_json(left(p_label, 60))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_label ~ hidden THEN
        RAISE EXCEPTION 'label % has an invisible character', to_json(left(p_label, 60))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_label ~ ('^' || cf || '|' || cf || '$') THEN
        RAISE EXCEPTION 'label % has an invisible character at an end',
            to_json(left(p_label, 60)) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT p.status INTO st FROM photos p
    WHERE p.id = p_photo_id AND p.owner = p_owner FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'photo % is not a photo of this owner', p_photo_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF st = 'deleted' THEN
        RAISE EXCEPTION 'photo % is deleted', p_photo_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF p_verdict = 'add' AND p_kind = 'landmark'
       AND NOT EXISTS (SELECT FROM landmarks l WHERE l.landmark_id = p_label) THEN
        RAISE EXCEPTION 'no landmark % in any release', to_json(left(p_label, 60))
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
