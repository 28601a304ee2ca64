-- Build step 5 (signals/build/redact.py): where PII was found, build_redactions(t -> r) maps
-- each text to its redaction. Edits are replaced in build_edited_texts; build_redacted_texts
-- holds the redacted prompt and/or completion of each exported interaction that has PII
-- (NULL: that part is unchanged), which the export joins by rid.
UPDATE build_edited_texts SET edited_text = build_redactions.r FROM build_redactions
WHERE build_edited_texts.edited_text = build_redactions.t AND build_edited_texts.rid IN (SELECT rid FROM build_members);
CREATE OR REPLACE TEMP TABLE build_redacted_texts AS
WITH src AS (
    SELECT i.rowid AS rid, i.completion, from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]') AS prompt
    FROM interactions i SEMI JOIN build_pii_members u ON u.rid = i.rowid
),
msgs AS (
    SELECT rid, unnest(prompt) AS m, generate_subscripts(prompt, 1) AS pos FROM src
),
prompts AS (
    SELECT rid, bool_or(build_redactions.r IS NOT NULL) AS changed,
        list(struct_pack(role := m.role, content := coalesce(build_redactions.r, m.content)) ORDER BY pos) AS prompt
    FROM msgs LEFT JOIN build_redactions ON build_redactions.t = msgs.m.content
    GROUP BY rid
)
SELECT s.rid, CASE WHEN p.changed THEN p.prompt END AS prompt, c.r AS completion
FROM src s LEFT JOIN prompts p USING (rid) LEFT JOIN build_redactions c ON c.t = s.completion
WHERE p.changed OR c.r IS NOT NULL;
