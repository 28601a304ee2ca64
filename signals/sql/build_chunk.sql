-- Build step 6, per chunk [b_lo, b_hi) of rows in the store (build_in_chunk: build_export.sql):
-- the texts, app, task and user of the chunk's interactions, read and parsed once for every
-- kind, with PII redacted, fetched as Arrow. Then every kind's rows of the chunk, narrow and
-- sorted.
SELECT i.rowid AS rid, i.interaction_id, i.app, i.task, i.user_id,
    coalesce(s.redacted_prompt, from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]')) AS prompt,
    coalesce(s.redacted_completion, i.completion) AS completion,
    s.edited_text
FROM interactions i
SEMI JOIN (SELECT rid FROM build_export_rows WHERE build_in_chunk(rid)) u ON u.rid = i.rowid
LEFT JOIN (SELECT * FROM build_changed_texts WHERE build_in_chunk(rid)) s ON s.rid = i.rowid
WHERE build_in_chunk(i.rowid);
SELECT e.kind::VARCHAR AS kind, e.rid, e.a_edit, e.label, e.b_other, o.completion AS other_text,
    e.origin::VARCHAR AS origin, e.is_eval
FROM (SELECT * FROM build_export_rows WHERE build_in_chunk(rid)) e
LEFT JOIN (SELECT * FROM build_rejected_texts WHERE build_in_chunk(rid)) o
  ON e.b_other AND o.rid = e.rid AND o.other_rid = e.other_rid
ORDER BY e.kind, e.is_eval, e.rid, e.origin, e.other_rid, e.label;   -- enums: in their values' order
