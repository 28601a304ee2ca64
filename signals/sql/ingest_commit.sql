-- Stage 4 (inside the per-source transaction): store what is new, quarantine the rest.
-- Variables: ingest_id, source_path.
INSERT INTO interactions
SELECT interaction_id, ts, user_id, session_id, app, task, model_id, prompt, completion, metadata,
    getvariable('ingest_id'), source_row
FROM rec
WHERE rtype = 'interaction' AND err IS NULL AND ln NOT IN (SELECT ln FROM ist);

INSERT INTO feedback
SELECT f.event_id, f.interaction_id, f.ts, f.kind,
    CASE WHEN f.kind = 'edit' THEN f.edited_text END,
    CASE WHEN f.kind = 'rate' THEN f.score END,
    CASE WHEN f.kind = 'choose' THEN f.other_interaction_id END,
    f.user_id, f.metadata, getvariable('ingest_id'), f.source_row
FROM fb f
WHERE f.err IS NULL
  AND f.ln NOT IN (SELECT ln FROM ist WHERE status IN ('conflict', 'forgotten'))
  AND NOT EXISTS (SELECT 1 FROM fst WHERE fst.ln = f.ln AND fst.idx = f.idx);

-- user_id is kept when it can be recovered, even from a malformed line, so `forget` finds it
INSERT INTO quarantine (source_path, source_row, field, reason, detail, raw, user_id, ingest_id, quarantined_at)
SELECT getvariable('source_path'), q.source_row, q.field, q.reason, q.detail, q.raw,
    coalesce(q.user_id, nullif(regexp_extract(q.raw, '"user_id"\s*:\s*"([^"]*)"', 1), '')),
    getvariable('ingest_id'), now()
FROM (
    SELECT r.source_row, r.err.field AS field, r.err.reason AS reason, r.err.detail AS detail, r.raw, r.user_id
    FROM rec r WHERE r.err IS NOT NULL
    UNION ALL
    SELECT f.source_row, f.err.field, f.err.reason, f.err.detail, f.raw_item, f.user_id
    FROM fb f WHERE f.err IS NOT NULL AND f.idx > 0
    UNION ALL
    SELECT r.source_row, 'interaction_id', 'conflict', s.detail, l.line, r.user_id
    FROM ist s JOIN rec r USING (ln) JOIN conflict_lines l USING (ln) WHERE s.status = 'conflict'
    UNION ALL
    SELECT f.source_row, 'event_id', 'conflict', s.detail, coalesce(f.raw_item, l.line), f.user_id
    FROM fst s JOIN fb f USING (ln, idx) LEFT JOIN conflict_lines l ON l.ln = s.ln AND s.idx = 0 WHERE s.status = 'conflict'
) q;
