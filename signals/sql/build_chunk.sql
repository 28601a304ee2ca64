-- Build step 6, per chunk [b_lo, b_hi) (b_in_chunk: build_export.sql): the texts, app, task
-- and user of the chunk's interactions, read and parsed once for every kind, with PII
-- redacted, fetched as Arrow. Then every kind's rows of the chunk, narrow and sorted.
SELECT i.interaction_id, i.app, i.task, i.user_id,
    coalesce(s.redacted_prompt, from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]')) AS prompt,
    coalesce(s.redacted_completion, i.completion) AS completion,
    s.edited_text
FROM (SELECT * FROM b_src WHERE b_in_chunk(interaction_id)) s
JOIN interactions i ON i.interaction_id = s.interaction_id AND b_in_chunk(i.interaction_id);
SELECT e.kind, e.interaction_id, e.a_edit, e.label, e.b_other, o.completion AS other_text, e.origin, e.is_eval
FROM (SELECT * FROM b_exp WHERE b_in_chunk(interaction_id)) e
LEFT JOIN (SELECT * FROM b_oth WHERE b_in_chunk(interaction_id)) o
  ON e.b_other AND o.interaction_id = e.interaction_id AND o.other_id = e.other_id
ORDER BY e.kind, e.is_eval, e.interaction_id, e.origin, e.other_id, e.label;
