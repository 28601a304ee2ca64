-- Helpers for source mappings written in SQL (`sql:` in conf/source/*.yaml; signals/sources.py).
-- They run after ingest_macros.sql, so jt, present and jtext are there too.
-- A quarantine marker for input row `ln`: stage 1 stores it as reason mapping_error, naming `field`.
CREATE OR REPLACE TEMP MACRO reject(ln, field, detail, raw) AS
    json_object('_reject', 'mapping_error', '_field', field, '_detail', detail, '_raw', raw, '_source_row', ln);
-- a line that is not a JSON object
CREATE OR REPLACE TEMP MACRO not_json(ln, raw) AS
    json_object('_reject', 'malformed_json', '_detail', 'not a JSON object (truncated line, stray text or bad escape)',
                '_raw', raw, '_source_row', ln);
-- chat messages from a tool's input: a list as given, {messages: [...]}, a string (one user turn),
-- anything else as its JSON text in one user turn
CREATE OR REPLACE TEMP MACRO as_prompt(x) AS CASE
    WHEN jt(x) = 'ARRAY' THEN x
    WHEN jt(x) = 'OBJECT' AND present(json_extract(x, '$.messages')) THEN json_extract(x, '$.messages')
    WHEN jt(x) = 'VARCHAR' THEN x
    WHEN present(x) THEN to_json(x::VARCHAR)
END;
-- the text of a tool's output: a string, a message ({content}), a chat completion ({choices}), {text},
-- else its JSON text
CREATE OR REPLACE TEMP MACRO as_completion(x) AS CASE
    WHEN jt(x) = 'VARCHAR' THEN x ->> '$'
    WHEN jt(x) = 'OBJECT' THEN coalesce(x ->> '$.content', x ->> '$.choices[0].message.content', x ->> '$.text', x::VARCHAR)
    WHEN present(x) THEN x::VARCHAR
END;
-- score rules (params.scores / params.evaluations of a mapping): "rate", "edit", or
-- {accept: [values], reject: [values]}; a value matches as lower-case text (true, 1, good)
CREATE OR REPLACE TEMP MACRO num_text(n) AS CASE WHEN n = floor(n) AND abs(n) < 1e15 THEN CAST(n::HUGEINT AS VARCHAR) ELSE n::VARCHAR END;
CREATE OR REPLACE TEMP MACRO rule_values(rule, k) AS
    list_transform(coalesce(json_extract(rule, '$.' || k || '[*]'), []), lambda x: lower(CASE WHEN jt(x) = 'VARCHAR' THEN x ->> '$' ELSE x::VARCHAR END));
CREATE OR REPLACE TEMP MACRO rule_kind(rule, num, label) AS CASE
    WHEN rule IS NULL THEN NULL
    WHEN jt(rule) = 'VARCHAR' AND rule ->> '$' IN ('rate', 'edit') THEN rule ->> '$'
    WHEN list_has_any(rule_values(rule, 'accept'), [lower(label), num_text(num)]) THEN 'accept'
    WHEN list_has_any(rule_values(rule, 'reject'), [lower(label), num_text(num)]) THEN 'reject'
END;
-- the rules of params.<section> as rows (name, rule)
CREATE OR REPLACE TEMP MACRO rules(section) AS TABLE
    SELECT key AS rule_name, value AS rule FROM json_each(getvariable('source_params'), '$.' || section);
-- An OTLP/JSON line (ExportTraceServiceRequest) parsed once into typed structs: resources, scopes,
-- spans, their attributes and events ([{key, value: {stringValue | intValue | doubleValue |
-- boolValue}}]); NULL for a line that is not JSON, resourceSpans NULL when it is not a list. Typed
-- structs, not JSON fragments: a span's fields are read without parsing its text again (2.5x faster
-- than json_extract per span on 200k records). In a JSON object that repeats a key the first wins.
CREATE OR REPLACE TEMP MACRO otlp(line) AS try(json_transform(line, '{"resourceSpans": [{"resource": {"attributes": [{"key": "VARCHAR", "value": {"stringValue": "VARCHAR", "intValue": "VARCHAR", "doubleValue": "DOUBLE", "boolValue": "BOOLEAN"}}]}, "scopeSpans": [{"spans": [{"traceId": "VARCHAR", "spanId": "VARCHAR", "parentSpanId": "VARCHAR", "startTimeUnixNano": "VARCHAR", "attributes": [{"key": "VARCHAR", "value": {"stringValue": "VARCHAR", "intValue": "VARCHAR", "doubleValue": "DOUBLE", "boolValue": "BOOLEAN"}}], "events": [{"name": "VARCHAR", "timeUnixNano": "VARCHAR", "attributes": [{"key": "VARCHAR", "value": {"stringValue": "VARCHAR", "intValue": "VARCHAR", "doubleValue": "DOUBLE", "boolValue": "BOOLEAN"}}]}], "status": {"code": "VARCHAR", "message": "VARCHAR"}}]}]}]}'));
-- the value of attribute `k` as text (the first if repeated), NULL when absent; `keys` is the
-- attributes' keys, list_transform(attrs, lambda a: a.key), computed once per span
CREATE OR REPLACE TEMP MACRO otel_str(attrs, keys, k) AS
    coalesce(attrs[list_position(keys, k)].value.stringValue, attrs[list_position(keys, k)].value.intValue,
             attrs[list_position(keys, k)].value.doubleValue::VARCHAR, attrs[list_position(keys, k)].value.boolValue::VARCHAR);
-- Older helpers on JSON fragments (mappings copied from otel-genai.yaml before otlp() still use them).
-- OTLP/JSON attributes ([{key, value: {stringValue | intValue | doubleValue | boolValue | ...}}]):
-- the value of `k` as text (the first if repeated), NULL when absent
-- otel_attrs keeps keys and values as two lists (json_transform to a list of structs ran out of
-- memory on 40k spans in DuckDB 2.0.1; list lambdas are avoided for the same reason)
CREATE OR REPLACE TEMP MACRO otel_attrs(x) AS {'k': json_extract_string(x, '$[*].key'), 'v': json_extract(x, '$[*].value')};
CREATE OR REPLACE TEMP MACRO otel_attr(attrs, k) AS attrs.v[list_position(attrs.k, k)];
CREATE OR REPLACE TEMP MACRO otel_text(v) AS coalesce(v ->> '$.stringValue', v ->> '$.intValue', v ->> '$.doubleValue', v ->> '$.boolValue');
-- span events transformed with typed attributes ([{key, value: {stringValue, intValue, doubleValue, boolValue}}])
CREATE OR REPLACE TEMP MACRO ev_attr(attrs, k) AS list_filter(coalesce(attrs, []), lambda a: a.key = k)[1].value;
CREATE OR REPLACE TEMP MACRO ev_text(attrs, k) AS coalesce(ev_attr(attrs, k).stringValue, ev_attr(attrs, k).intValue,
                                                            ev_attr(attrs, k).doubleValue::VARCHAR, ev_attr(attrs, k).boolValue::VARCHAR);
-- GenAI messages ([{role, parts: [{type, content}]}], semconv 1.37+; JSON text) as a list of
-- {role, content}: text parts joined; NULL when not valid JSON
CREATE OR REPLACE TEMP MACRO genai_msgs(x) AS CASE WHEN json_valid(x) THEN list_transform(
    json_transform(x, '[{"role": "VARCHAR", "parts": [{"type": "VARCHAR", "content": "VARCHAR"}], "content": "VARCHAR"}]'),
    lambda m: {'role': m.role, 'content': coalesce(m.content, array_to_string(list_transform(list_filter(m.parts, lambda p: p.type = 'text'), lambda p: p.content), ''))}) END;
-- gen_ai.system_instructions ([{type, content}]) as one system message, or []
CREATE OR REPLACE TEMP MACRO genai_system(x) AS CASE WHEN json_valid(x) THEN [{'role': 'system', 'content': array_to_string(
    list_transform(json_transform(x, '[{"type": "VARCHAR", "content": "VARCHAR"}]'), lambda p: p.content), '')}] ELSE [] END;
-- the text of the first GenAI message of `x` (JSON text; content, else its text parts joined),
-- without converting the other messages: a completion
CREATE OR REPLACE TEMP MACRO msg_text(m) AS
    coalesce(m.content, array_to_string(list_transform(list_filter(m.parts, lambda p: p.type = 'text'), lambda p: p.content), ''));
CREATE OR REPLACE TEMP MACRO genai_first(x) AS CASE WHEN json_valid(x) THEN msg_text(
    json_transform(x, '[{"parts": [{"type": "VARCHAR", "content": "VARCHAR"}], "content": "VARCHAR"}]')[1]) END;
