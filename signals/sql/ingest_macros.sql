-- Helpers for ingest_*.sql. Values arrive as JSON fragments from one json_extract(line, [paths]),
-- so each source line is parsed once. A missing key is SQL NULL; an explicit null has type 'NULL'.
-- the JSON type of a fragment from its first character (json_type would parse all of it: a
-- 1.5 KB completion, many times a row); fragments are compact JSON, numbers ask json_type
CREATE OR REPLACE TEMP MACRO jt(x) AS CASE
    WHEN x IS NULL THEN NULL
    WHEN starts_with(x, '"') THEN 'VARCHAR'
    WHEN starts_with(x, '[') THEN 'ARRAY'
    WHEN starts_with(x, '{') THEN 'OBJECT'
    WHEN x = 'null' THEN 'NULL'
    ELSE json_type(x) END;
CREATE OR REPLACE TEMP MACRO present(x) AS x IS NOT NULL AND jt(x) <> 'NULL';
-- a scalar usable as an id/label: a string or an integer (integers are stored as text)
CREATE OR REPLACE TEMP MACRO jtext(x) AS CASE WHEN jt(x) IN ('VARCHAR', 'BIGINT', 'UBIGINT') THEN x ->> '$' END;
CREATE OR REPLACE TEMP MACRO bad_text(x) AS present(x) AND jt(x) NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT');
-- epoch seconds or milliseconds (>= 1e11 cannot be seconds before year 5000)
CREATE OR REPLACE TEMP MACRO epoch_ts(d) AS try(CASE WHEN abs(d) >= 1e11 THEN to_timestamp(d / 1000.0) ELSE to_timestamp(d) END);
CREATE OR REPLACE TEMP MACRO parse_ts(x) AS CASE
    WHEN jt(x) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN epoch_ts((x ->> '$')::DOUBLE)
    WHEN jt(x) = 'VARCHAR' THEN CASE
        WHEN regexp_full_match(trim(x ->> '$'), '-?[0-9]+(\.[0-9]+)?') THEN epoch_ts(trim(x ->> '$')::DOUBLE)
        ELSE try_cast(x ->> '$' AS TIMESTAMPTZ) END
END;
-- a number, or a string holding one (CSV)
CREATE OR REPLACE TEMP MACRO parse_num(x) AS CASE
    WHEN jt(x) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN (x ->> '$')::DOUBLE
    WHEN jt(x) = 'VARCHAR' THEN try_cast(trim(x ->> '$') AS DOUBLE)
END;
-- chat messages: a list as given, a string holding a JSON list (CSV), or a plain string = one user turn
CREATE OR REPLACE TEMP MACRO prompt_msgs(x) AS CASE
    WHEN jt(x) = 'ARRAY' THEN x
    WHEN jt(x) = 'VARCHAR' AND starts_with(ltrim(x ->> '$'), '[') AND json_valid(x ->> '$')
        THEN (x ->> '$')::JSON
    WHEN jt(x) = 'VARCHAR' THEN json_array(json_object('role', 'user', 'content', x ->> '$'))
END;
-- every element an object whose role and content are strings. Fast path (one parse): each
-- element read as {role, content} JSON fragments that must both be strings (a non-object element
-- gives NULLs); only a list that fails it gets the exact check, where `$[*].role` lists one type
-- per element that has the key.
CREATE OR REPLACE TEMP MACRO msgs_exact(m) AS coalesce(json_type(m) = 'ARRAY' AND json_array_length(m) > 0
    AND len(json_type(m, '$[*].role')) = json_array_length(m)
    AND len(json_type(m, '$[*].content')) = json_array_length(m)
    AND list_distinct(json_type(m, '$[*].role') || json_type(m, '$[*].content')) = ['VARCHAR'], false);
CREATE OR REPLACE TEMP MACRO msgs_ok(m) AS CASE
    WHEN coalesce(list_bool_and(list_transform(json_transform(m, '[{"role":"JSON","content":"JSON"}]'),
                  lambda e: coalesce(starts_with(e.role, '"') AND starts_with(e.content, '"'), false))), false)
        THEN true
    ELSE msgs_exact(m) END;
-- an object, or a string holding one (CSV)
CREATE OR REPLACE TEMP MACRO meta_json(x) AS CASE
    WHEN jt(x) = 'OBJECT' THEN x
    WHEN jt(x) = 'VARCHAR' AND starts_with(ltrim(x ->> '$'), '{') AND json_valid(x ->> '$') THEN (x ->> '$')::JSON
END;
CREATE OR REPLACE TEMP MACRO bad_meta(x) AS present(x) AND meta_json(x) IS NULL;
CREATE OR REPLACE TEMP MACRO err(r, f, d) AS {'reason': r, 'field': f, 'detail': d};
-- the accepted time range [1970-01-01, 2100-01-01) UTC (signals.ingest.TS_MIN/TS_MAX); outside it
-- (infinity, year 10000, before year 1, negative epochs) a record is quarantined as invalid_timestamp
CREATE OR REPLACE TEMP MACRO ts_ok(t) AS t >= TIMESTAMPTZ '1970-01-01 00:00:00+00' AND t < TIMESTAMPTZ '2100-01-01 00:00:00+00';
CREATE OR REPLACE TEMP MACRO ts_err(f, x, t) AS err('invalid_timestamp', f, CASE WHEN t IS NULL
    THEN 'cannot parse ' || f || ' ' || (x)::VARCHAR || ' (ISO-8601 or epoch seconds/milliseconds, from 1970-01-01 to before 2100-01-01 UTC)'
    ELSE f || ' ' || (x)::VARCHAR || ' is outside the accepted range 1970-01-01 .. 2100-01-01 (UTC, end excluded)' END);
-- the checks every feedback event gets, top-level or nested (fields given as JSON fragments)
CREATE OR REPLACE TEMP MACRO feedback_err(kind, kind_j, text_j, score_j, score, other_j, other, iid, user_j, meta_j) AS CASE
    WHEN NOT present(kind_j) THEN err('missing_field', 'kind', 'kind is required (accept, edit, reject, rate, choose)')
    WHEN kind IS NULL THEN err('wrong_type', 'kind', 'kind must be a string, got ' || jt(kind_j))
    WHEN kind NOT IN ('accept', 'edit', 'reject', 'rate', 'choose') THEN err('unknown_kind', 'kind', 'unknown feedback kind ' || kind || ' (expected accept, edit, reject, rate, choose)')
    WHEN kind = 'edit' AND (jt(text_j) IS DISTINCT FROM 'VARCHAR' OR trim(text_j ->> '$') = '') THEN err('edit_without_text', 'edited_text', 'an edit needs a non-empty edited_text string')
    WHEN kind = 'rate' AND NOT present(score_j) THEN err('rate_without_score', 'score', 'a rating needs a numeric score')
    WHEN kind = 'rate' AND (score IS NULL OR isnan(score) OR isinf(score)) THEN err('wrong_type', 'score', 'score must be a number, got ' || (score_j)::VARCHAR)
    WHEN kind = 'choose' AND NOT present(other_j) THEN err('choose_without_other', 'other_interaction_id', 'a choice needs other_interaction_id (the candidate not chosen)')
    WHEN kind = 'choose' AND (other IS NULL OR other = '') THEN err('wrong_type', 'other_interaction_id', 'other_interaction_id must be a non-empty string or integer')
    WHEN kind = 'choose' AND other = iid THEN err('choose_without_other', 'other_interaction_id', 'other_interaction_id equals interaction_id')
    WHEN bad_text(user_j) THEN err('wrong_type', 'user_id', 'user_id must be a string, got ' || jt(user_j))
    WHEN bad_meta(meta_j) THEN err('wrong_type', 'metadata', 'metadata must be an object, got ' || jt(meta_j))
END;
-- a list, or a string holding one (CSV)
CREATE OR REPLACE TEMP MACRO list_json(x) AS CASE
    WHEN jt(x) = 'ARRAY' THEN x
    WHEN jt(x) = 'VARCHAR' AND starts_with(ltrim(x ->> '$'), '[') AND json_valid(x ->> '$') THEN (x ->> '$')::JSON
END;
