-- Build step 5 (when PII was found): replace redacted texts, b_red(t -> r), in the
-- exported examples (b_ex) and in the prompts of the interactions they use (b_int).
UPDATE b_ex SET text_a = b_red.r FROM b_red WHERE b_ex.text_a = b_red.t AND b_ex.dropped IS NULL;
UPDATE b_ex SET text_b = b_red.r FROM b_red WHERE b_ex.text_b = b_red.t AND b_ex.dropped IS NULL;
CREATE OR REPLACE TEMP TABLE b_prompt_red AS
WITH msgs AS (
    SELECT i.interaction_id, unnest(i.prompt) AS m, generate_subscripts(i.prompt, 1) AS pos
    FROM b_int i SEMI JOIN b_used u USING (interaction_id)
),
touched AS (
    SELECT DISTINCT interaction_id FROM msgs SEMI JOIN b_red ON b_red.t = msgs.m.content
)
SELECT interaction_id,
    list(struct_pack(role := m.role, content := coalesce(b_red.r, m.content)) ORDER BY pos) AS prompt
FROM msgs LEFT JOIN b_red ON b_red.t = msgs.m.content
WHERE msgs.interaction_id IN (SELECT interaction_id FROM touched)
GROUP BY interaction_id;
UPDATE b_int SET prompt = p.prompt FROM b_prompt_red p WHERE b_int.interaction_id = p.interaction_id;
