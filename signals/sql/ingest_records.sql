-- Stage 1 of an ingest: classify and validate every line of one source.
-- In:  view raw_input(ln, line), one JSON record per line in source order; ln may be NULL
--      (a JSONL file read in parallel: then ln is the line's position, rowid + 1, which a
--      CTAS keeps because DuckDB preserves insertion order); variable max_record_chars.
-- Out: temp table rec_t (from view rec_parse, which a chunked SQL mapping inserts through as
--      its file streams in) and view rec: one row per non-blank line, typed native fields, and
--      `err` (NULL or {reason, field, detail}) for lines that go to quarantine; `raw` (the
--      line as read) is kept only for those, so the big texts are held once; `nbytes` (the
--      line's length in bytes) lets the caller check that no line of the file went missing.
-- A record with `kind` and no `completion` is feedback; anything else is an interaction,
-- which may carry its own events in a nested `feedback` list (validated in ingest_feedback.sql).
-- Each line is parsed once: try(json_extract(...)) is NULL exactly for lines that are not JSON.
-- DuckDB evaluates the repeated v[i] from one json_extract per row (common subexpressions).
CREATE OR REPLACE TEMP VIEW rec_parse AS
WITH x AS (
    SELECT ln, line, strlen(line) AS nbytes,
        line IS NULL OR NOT regexp_matches(line, '\S') AS blank,
        CASE WHEN regexp_matches(line, '^\s*\{') THEN try(json_extract(line, [
            '$._reject', '$.interaction_id', '$.ts', '$.prompt', '$.completion',
            '$.user_id', '$.session_id', '$.app', '$.task', '$.model_id',
            '$.metadata', '$.feedback', '$.kind', '$.event_id', '$.edited_text',
            '$.score', '$.other_interaction_id', '$._field', '$._detail', '$._source_row', '$._raw']))
        END AS v
    FROM raw_input
), f AS (
    SELECT ln, line, nbytes, blank, v,
        v IS NOT NULL AS obj,
        CASE WHEN v IS NOT NULL THEN true WHEN blank THEN false ELSE json_valid(line) END AS ok,
        try_cast(v[20] ->> '$' AS BIGINT) AS src_row,
        CASE WHEN blank THEN NULL WHEN present(v[13]) AND NOT present(v[5]) THEN 'feedback' ELSE 'interaction' END AS rtype,
        jtext(v[2]) AS interaction_id,
        parse_ts(v[3]) AS ts,
        prompt_msgs(v[4]) AS prompt,
        CASE WHEN jt(v[5]) = 'VARCHAR' THEN v[5] ->> '$' END AS completion,
        jtext(v[6]) AS user_id, jtext(v[7]) AS session_id, jtext(v[8]) AS app,
        jtext(v[9]) AS task, jtext(v[10]) AS model_id,
        meta_json(v[11]) AS metadata,
        list_json(v[12]) AS feedback_list,
        jtext(v[13]) AS kind, jtext(v[14]) AS event_id,
        CASE WHEN jt(v[15]) = 'VARCHAR' THEN v[15] ->> '$' END AS edited_text,
        parse_num(v[16]) AS score,
        jtext(v[17]) AS other_interaction_id,
        v[21] ->> '$' AS raw_override
    FROM x
), e AS (
SELECT ln, src_row, nbytes, line, raw_override, rtype, interaction_id, ts, prompt, completion, user_id, session_id, app, task,
    model_id, metadata, feedback_list, kind, event_id, edited_text, score, other_interaction_id,
    CASE
    WHEN blank THEN NULL
    WHEN NOT ok THEN err('malformed_json', NULL, 'not valid JSON (truncated line, stray text or bad escape)')
    WHEN NOT obj THEN err('wrong_type', NULL, 'a record must be a JSON object')
    WHEN present(v[1]) THEN err(v[1] ->> '$', v[18] ->> '$', v[19] ->> '$')
    WHEN strlen(line) > getvariable('max_record_chars') AND length(line) > getvariable('max_record_chars')
        THEN err('too_large', NULL, printf('record is %d characters; the limit is %d (max_record_chars)', length(line), getvariable('max_record_chars')))
    WHEN rtype = 'interaction' THEN CASE
        WHEN NOT present(v[2]) THEN err('missing_field', 'interaction_id', 'interaction_id is required')
        WHEN interaction_id IS NULL THEN err('wrong_type', 'interaction_id', 'interaction_id must be a string or integer, got ' || jt(v[2]))
        WHEN interaction_id = '' THEN err('missing_field', 'interaction_id', 'interaction_id is empty')
        WHEN NOT present(v[3]) THEN err('missing_field', 'ts', 'ts is required (ISO-8601 or epoch seconds/milliseconds)')
        WHEN jt(v[3]) NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE') THEN err('wrong_type', 'ts', 'ts must be a string or number, got ' || jt(v[3]))
        WHEN ts IS NULL OR NOT ts_ok(ts) THEN ts_err('ts', v[3], ts)
        WHEN NOT present(v[4]) THEN err('missing_field', 'prompt', 'prompt is required')
        WHEN prompt IS NULL OR NOT msgs_ok(prompt) THEN err('wrong_type', 'prompt', 'prompt must be a string or a non-empty list of {role, content} messages')
        WHEN NOT present(v[5]) THEN err('missing_field', 'completion', 'completion is required')
        WHEN completion IS NULL THEN err('wrong_type', 'completion', 'completion must be a string, got ' || jt(v[5]))
        WHEN bad_text(v[6]) THEN err('wrong_type', 'user_id', 'user_id must be a string, got ' || jt(v[6]))
        WHEN bad_text(v[7]) THEN err('wrong_type', 'session_id', 'session_id must be a string, got ' || jt(v[7]))
        WHEN bad_text(v[8]) THEN err('wrong_type', 'app', 'app must be a string, got ' || jt(v[8]))
        WHEN bad_text(v[9]) THEN err('wrong_type', 'task', 'task must be a string, got ' || jt(v[9]))
        WHEN bad_text(v[10]) THEN err('wrong_type', 'model_id', 'model_id must be a string, got ' || jt(v[10]))
        WHEN bad_meta(v[11]) THEN err('wrong_type', 'metadata', 'metadata must be an object, got ' || jt(v[11]))
        WHEN present(v[12]) AND feedback_list IS NULL THEN err('wrong_type', 'feedback', 'feedback must be a list of events, got ' || jt(v[12]))
        END
    ELSE CASE
        WHEN NOT present(v[14]) THEN err('missing_field', 'event_id', 'event_id is required on feedback records')
        WHEN event_id IS NULL OR event_id = '' THEN err('wrong_type', 'event_id', 'event_id must be a non-empty string or integer')
        WHEN NOT present(v[2]) THEN err('missing_field', 'interaction_id', 'interaction_id is required on feedback records')
        WHEN interaction_id IS NULL OR interaction_id = '' THEN err('wrong_type', 'interaction_id', 'interaction_id must be a non-empty string or integer')
        WHEN NOT present(v[3]) THEN err('missing_field', 'ts', 'ts is required (ISO-8601 or epoch seconds/milliseconds)')
        WHEN ts IS NULL OR NOT ts_ok(ts) THEN ts_err('ts', v[3], ts)
        ELSE feedback_err(kind, v[13], v[15], v[16], score, v[17], other_interaction_id, interaction_id, v[6], v[11])
        END
    END AS err
FROM f
)
SELECT * EXCLUDE (line, raw_override), CASE WHEN err IS NOT NULL THEN coalesce(raw_override, line) END AS raw
FROM e;

CREATE OR REPLACE TEMP TABLE rec_t AS SELECT * FROM rec_parse;

CREATE OR REPLACE TEMP VIEW rec AS
SELECT coalesce(ln, rowid + 1) AS ln, coalesce(src_row, ln, rowid + 1) AS source_row, * EXCLUDE (ln, src_row)
FROM rec_t WHERE rtype IS NOT NULL;
