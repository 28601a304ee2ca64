-- Build step 5: where PII was found, b_red(t -> r) maps each text to its redaction. Edits
-- are replaced in b_edits; b_pii holds the redacted prompt and/or completion of each exported
-- interaction that has PII (NULL: that part is unchanged), which the export joins by rid.
UPDATE b_edits SET edited_text = b_red.r FROM b_red
WHERE b_edits.edited_text = b_red.t AND b_edits.rid IN (SELECT rid FROM b_used);
CREATE OR REPLACE TEMP TABLE b_pii AS
WITH src AS (
    SELECT i.rowid AS rid, i.completion, from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]') AS prompt
    FROM interactions i SEMI JOIN b_pii_used u ON u.rid = i.rowid
),
msgs AS (
    SELECT rid, unnest(prompt) AS m, generate_subscripts(prompt, 1) AS pos FROM src
),
prompts AS (
    SELECT rid, bool_or(b_red.r IS NOT NULL) AS changed,
        list(struct_pack(role := m.role, content := coalesce(b_red.r, m.content)) ORDER BY pos) AS prompt
    FROM msgs LEFT JOIN b_red ON b_red.t = msgs.m.content
    GROUP BY rid
)
SELECT s.rid, CASE WHEN p.changed THEN p.prompt END AS prompt, c.r AS completion
FROM src s LEFT JOIN prompts p USING (rid) LEFT JOIN b_red c ON c.t = s.completion
WHERE p.changed OR c.r IS NOT NULL;
