-- Stage 2: every feedback event of the source, top-level records and items of nested
-- `feedback` lists (which inherit interaction_id, ts and user_id from their interaction,
-- and get event_id "<interaction_id>/fb<index>" when they carry none).
-- Out: temp table fb(ln, idx, ..., err, raw_item); idx = 0 for top-level records.
CREATE OR REPLACE TEMP TABLE fb AS
WITH items AS (
    SELECT ln, source_row, interaction_id AS p_iid, ts AS p_ts, user_id AS p_user,
        unnest(json_extract(feedback_list, '$[*]')) AS e,
        unnest(generate_series(1, json_array_length(feedback_list)::BIGINT)) AS idx
    FROM rec
    WHERE rtype = 'interaction' AND err IS NULL AND feedback_list IS NOT NULL
), nx AS (
    SELECT *, CASE WHEN jt(e) = 'OBJECT' THEN json_extract(e, [
        '$.event_id', '$.interaction_id', '$.ts', '$.kind', '$.edited_text',
        '$.score', '$.other_interaction_id', '$.user_id', '$.metadata']) END AS v
    FROM items
), nested AS (
    SELECT ln, source_row, idx,
        coalesce(jtext(v[1]), p_iid || '/fb' || idx) AS event_id,
        p_iid AS interaction_id,
        CASE WHEN present(v[3]) THEN parse_ts(v[3]) ELSE p_ts END AS ts,
        jtext(v[4]) AS kind,
        CASE WHEN jt(v[5]) = 'VARCHAR' THEN v[5] ->> '$' END AS edited_text,
        parse_num(v[6]) AS score,
        jtext(v[7]) AS other_interaction_id,
        coalesce(jtext(v[8]), p_user) AS user_id,
        meta_json(v[9]) AS metadata,
        CASE
        WHEN v IS NULL THEN err('wrong_type', 'feedback[' || (idx - 1) || ']', 'a feedback item must be an object')
        WHEN bad_text(v[1]) OR jtext(v[1]) = '' THEN err('wrong_type', 'feedback[' || (idx - 1) || '].event_id', 'event_id must be a non-empty string or integer')
        WHEN present(v[2]) AND jtext(v[2]) IS DISTINCT FROM p_iid THEN err('wrong_type', 'feedback[' || (idx - 1) || '].interaction_id', 'a nested event belongs to its interaction ' || p_iid || ', not ' || (v[2])::VARCHAR)
        WHEN present(v[3]) AND NOT coalesce(ts_ok(parse_ts(v[3])), false) THEN ts_err('feedback[' || (idx - 1) || '].ts', v[3], parse_ts(v[3]))
        ELSE (SELECT CASE WHEN e2 IS NOT NULL THEN err(e2.reason, 'feedback[' || (idx - 1) || '].' || e2.field, e2.detail) END
              FROM (SELECT feedback_err(jtext(v[4]), v[4], v[5], v[6], parse_num(v[6]), v[7], jtext(v[7]), p_iid, v[8], v[9]) AS e2))
        END AS err,
        e::VARCHAR AS raw_item
    FROM nx
)
SELECT ln, source_row, 0 AS idx, event_id, interaction_id, ts, kind, edited_text, score,
    other_interaction_id, user_id, metadata, err, NULL::VARCHAR AS raw_item
FROM rec WHERE rtype = 'feedback'
UNION ALL
SELECT * FROM nested;
