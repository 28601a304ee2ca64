-- Stage 1 of an ingest: classify and validate every line of one source.
-- In:  temp table raw_lines(ln BIGINT, line VARCHAR), one JSON record per line;
--      variable max_record_chars.
-- Out: temp table rec: one row per non-blank line, typed native fields, and `err`
--      (NULL or {reason, field, detail}) for lines that go to quarantine.
-- A record with `kind` and no `completion` is feedback; anything else is an interaction,
-- which may carry its own events in a nested `feedback` list (validated in ingest_feedback.sql).
-- The parsed values are stored once (rec_x, a temp table DuckDB can spill to disk):
-- left as a CTE, the planner re-evaluates json_extract for every v[i] it is asked for.
CREATE OR REPLACE TEMP TABLE rec_x AS
WITH src AS (
    SELECT ln, line, json_valid(line) AS ok, length(line) AS nchars
    FROM raw_lines
    WHERE line IS NOT NULL AND trim(line) <> ''
), x AS (
    SELECT ln, ok, nchars,
        ok AND starts_with(ltrim(line), '{') AS obj,
        CASE WHEN ok AND starts_with(ltrim(line), '{') THEN json_extract(line, [
            '$._reject', '$.interaction_id', '$.ts', '$.prompt', '$.completion',
            '$.user_id', '$.session_id', '$.app', '$.task', '$.model_id',
            '$.metadata', '$.feedback', '$.kind', '$.event_id', '$.edited_text',
            '$.score', '$.other_interaction_id', '$._field', '$._detail', '$._source_row', '$._raw'])
        END AS v
    FROM src
)
SELECT * FROM x;

CREATE OR REPLACE TEMP TABLE rec AS
WITH f AS (
    SELECT ln, ok, obj, nchars, v,
        coalesce(try_cast(v[20] ->> '$' AS BIGINT), ln) AS source_row,
        CASE WHEN present(v[13]) AND NOT present(v[5]) THEN 'feedback' ELSE 'interaction' END AS rtype,
        jtext(v[2]) AS interaction_id,
        parse_ts(v[3]) AS ts,
        prompt_msgs(v[4]) AS prompt,
        CASE WHEN json_type(v[5]) = 'VARCHAR' THEN v[5] ->> '$' END AS completion,
        jtext(v[6]) AS user_id, jtext(v[7]) AS session_id, jtext(v[8]) AS app,
        jtext(v[9]) AS task, jtext(v[10]) AS model_id,
        meta_json(v[11]) AS metadata,
        list_json(v[12]) AS feedback_list,
        jtext(v[13]) AS kind, jtext(v[14]) AS event_id,
        CASE WHEN json_type(v[15]) = 'VARCHAR' THEN v[15] ->> '$' END AS edited_text,
        parse_num(v[16]) AS score,
        jtext(v[17]) AS other_interaction_id,
        v[21] ->> '$' AS raw_override
    FROM rec_x
)
SELECT ln, source_row, rtype, interaction_id, ts, prompt, completion, user_id, session_id, app, task,
    model_id, metadata, feedback_list, kind, event_id, edited_text, score, other_interaction_id, raw_override,
    CASE
    WHEN NOT ok THEN err('malformed_json', NULL, 'not valid JSON (truncated line, stray text or bad escape)')
    WHEN NOT obj THEN err('wrong_type', NULL, 'a record must be a JSON object')
    WHEN present(v[1]) THEN err(v[1] ->> '$', v[18] ->> '$', v[19] ->> '$')
    WHEN nchars > getvariable('max_record_chars')
        THEN err('too_large', NULL, printf('record is %d characters; the limit is %d (max_record_chars)', nchars, getvariable('max_record_chars')))
    WHEN rtype = 'interaction' THEN CASE
        WHEN NOT present(v[2]) THEN err('missing_field', 'interaction_id', 'interaction_id is required')
        WHEN interaction_id IS NULL THEN err('wrong_type', 'interaction_id', 'interaction_id must be a string or integer, got ' || json_type(v[2]))
        WHEN interaction_id = '' THEN err('missing_field', 'interaction_id', 'interaction_id is empty')
        WHEN NOT present(v[3]) THEN err('missing_field', 'ts', 'ts is required (ISO-8601 or epoch seconds/milliseconds)')
        WHEN json_type(v[3]) NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE') THEN err('wrong_type', 'ts', 'ts must be a string or number, got ' || json_type(v[3]))
        WHEN ts IS NULL THEN err('invalid_timestamp', 'ts', 'cannot parse ts ' || (v[3])::VARCHAR)
        WHEN NOT present(v[4]) THEN err('missing_field', 'prompt', 'prompt is required')
        WHEN prompt IS NULL OR NOT msgs_ok(prompt) THEN err('wrong_type', 'prompt', 'prompt must be a string or a non-empty list of {role, content} messages')
        WHEN NOT present(v[5]) THEN err('missing_field', 'completion', 'completion is required')
        WHEN completion IS NULL THEN err('wrong_type', 'completion', 'completion must be a string, got ' || json_type(v[5]))
        WHEN bad_text(v[6]) THEN err('wrong_type', 'user_id', 'user_id must be a string, got ' || json_type(v[6]))
        WHEN bad_text(v[7]) THEN err('wrong_type', 'session_id', 'session_id must be a string, got ' || json_type(v[7]))
        WHEN bad_text(v[8]) THEN err('wrong_type', 'app', 'app must be a string, got ' || json_type(v[8]))
        WHEN bad_text(v[9]) THEN err('wrong_type', 'task', 'task must be a string, got ' || json_type(v[9]))
        WHEN bad_text(v[10]) THEN err('wrong_type', 'model_id', 'model_id must be a string, got ' || json_type(v[10]))
        WHEN bad_meta(v[11]) THEN err('wrong_type', 'metadata', 'metadata must be an object, got ' || json_type(v[11]))
        WHEN present(v[12]) AND feedback_list IS NULL THEN err('wrong_type', 'feedback', 'feedback must be a list of events, got ' || json_type(v[12]))
        END
    ELSE CASE
        WHEN NOT present(v[14]) THEN err('missing_field', 'event_id', 'event_id is required on feedback records')
        WHEN event_id IS NULL OR event_id = '' THEN err('wrong_type', 'event_id', 'event_id must be a non-empty string or integer')
        WHEN NOT present(v[2]) THEN err('missing_field', 'interaction_id', 'interaction_id is required on feedback records')
        WHEN interaction_id IS NULL OR interaction_id = '' THEN err('wrong_type', 'interaction_id', 'interaction_id must be a non-empty string or integer')
        WHEN NOT present(v[3]) THEN err('missing_field', 'ts', 'ts is required (ISO-8601 or epoch seconds/milliseconds)')
        WHEN ts IS NULL THEN err('invalid_timestamp', 'ts', 'cannot parse ts ' || (v[3])::VARCHAR)
        ELSE feedback_err(kind, v[13], v[15], v[16], score, v[17], other_interaction_id, interaction_id, v[6], v[11])
        END
    END AS err
FROM f;

DROP TABLE rec_x;
