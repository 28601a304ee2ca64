-- Build step 5: where PII was found, b_red(t -> r) maps each text to its redaction. Edits
-- are replaced in b_edits; prompts get a redacted copy in b_prompt_red (the interactions the
-- export reads them for); completions are mapped through b_red by the export.
UPDATE b_edits SET edited_text = b_red.r FROM b_red
WHERE b_edits.edited_text = b_red.t AND b_edits.interaction_id IN (SELECT interaction_id FROM b_used);
CREATE OR REPLACE TEMP TABLE b_prompt_red AS
WITH msgs AS (
    SELECT interaction_id, unnest(prompt) AS m, generate_subscripts(prompt, 1) AS pos
    FROM (SELECT i.interaction_id, from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]') AS prompt
          FROM interactions i SEMI JOIN b_used u USING (interaction_id))
),
touched AS (
    SELECT DISTINCT interaction_id FROM msgs SEMI JOIN b_red ON b_red.t = msgs.m.content
)
SELECT interaction_id,
    list(struct_pack(role := m.role, content := coalesce(b_red.r, m.content)) ORDER BY pos) AS prompt
FROM msgs LEFT JOIN b_red ON b_red.t = msgs.m.content
WHERE msgs.interaction_id IN (SELECT interaction_id FROM touched)
GROUP BY interaction_id;
