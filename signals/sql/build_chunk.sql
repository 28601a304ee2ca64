-- Build step 6, per chunk: the texts (and app, task, user) of the chunk's interactions [b_lo, b_hi) (b_hi NULL:
-- no upper bound), read and parsed once for every kind, with PII redacted (b_pii, b_edits),
-- fetched as Arrow (b_in_chunk: build_export.sql).
SELECT i.interaction_id, i.app, i.task, i.user_id,
    coalesce(p.prompt, from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]')) AS prompt,
    coalesce(p.completion, i.completion) AS completion,
    d.edited_text
FROM interactions i
LEFT JOIN (SELECT * FROM b_pii WHERE b_in_chunk(interaction_id)) p USING (interaction_id)
LEFT JOIN (SELECT interaction_id, edited_text FROM b_edits WHERE b_in_chunk(interaction_id)) d USING (interaction_id)
WHERE b_in_chunk(i.interaction_id)
  AND i.interaction_id IN (SELECT interaction_id FROM b_exp WHERE b_in_chunk(interaction_id));
