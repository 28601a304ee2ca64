-- Build step 3: every candidate example of every kind, before de-duplication, caps and
-- splits. One row per example: kind (sft | pref | kto), origin (the feedback kind that
-- made it, or regen), the interaction it comes from (for pairs: the chosen one) and the
-- other (the rejected one of a choice or regeneration), its texts, and `pre_drop`, the
-- reason a candidate is dropped before selection (NULL = a candidate).
CREATE OR REPLACE TEMP TABLE b_cand AS
WITH o AS (
    SELECT o.interaction_id, o.outcome, o.origin, o.edited_text, i.completion, i.prompt_key, i.user_id, i.session_id
    FROM b_out o JOIN b_int i USING (interaction_id)
),
kept AS (
    SELECT interaction_id, completion, prompt_key FROM b_int WHERE excluded IS NULL
),
choices AS (       -- the latest choice per unordered pair of candidates
    SELECT max_by(struct_pack(chosen := interaction_id, other := other_interaction_id), struct_pack(ts, event_id)) AS c
    FROM feedback
    WHERE kind = 'choose' AND other_interaction_id IS NOT NULL AND interaction_id <> other_interaction_id
    GROUP BY least(interaction_id, other_interaction_id), greatest(interaction_id, other_interaction_id)
),
regen_groups AS (  -- groups (same normalized prompt, maybe same user/session) with both outcomes
    SELECT prompt_key, CASE getvariable('b_regen_within') WHEN 'user' THEN user_id
                            WHEN 'session' THEN session_id ELSE '' END AS scope
    FROM o
    WHERE outcome IN ('accept', 'reject') AND getvariable('b_from_regen')
    GROUP BY ALL
    HAVING count(DISTINCT outcome) = 2
),
regen AS (
    SELECT o.*, row_number() OVER (
            PARTITION BY g.prompt_key, g.scope, o.outcome
            ORDER BY md5(getvariable('b_seed') || chr(31) || o.interaction_id)) AS r
    FROM o JOIN regen_groups g
      ON g.prompt_key = o.prompt_key
     AND g.scope = CASE getvariable('b_regen_within') WHEN 'user' THEN o.user_id
                        WHEN 'session' THEN o.session_id ELSE '' END
    WHERE o.outcome IN ('accept', 'reject')
)
-- SFT: accepted completions and edited texts
SELECT 'sft' AS kind, origin, interaction_id, NULL::VARCHAR AS other_id, NULL::BOOLEAN AS label,
       completion AS text_a, NULL::VARCHAR AS text_b, NULL::VARCHAR AS pre_drop
FROM o WHERE outcome = 'accept' AND getvariable('b_sft') AND getvariable('b_sft_accept')
UNION ALL
SELECT 'sft', origin, interaction_id, NULL, NULL, edited_text, NULL, NULL
FROM o WHERE outcome = 'edit' AND getvariable('b_sft') AND getvariable('b_sft_edit')
-- preference pairs from edits: chosen = edit, rejected = original (trivial edits are accepts)
UNION ALL
SELECT 'pref', 'edit', interaction_id, NULL, NULL, edited_text, completion, NULL
FROM o WHERE outcome = 'edit' AND getvariable('b_pref') AND getvariable('b_pref_edit')
-- preference pairs from explicit choices
UNION ALL
SELECT 'pref', 'choose', a.interaction_id, b.interaction_id, NULL, a.completion, b.completion,
    CASE WHEN a.completion = b.completion THEN 'identical_texts'
         WHEN getvariable('b_choose_same_prompt') AND a.prompt_key <> b.prompt_key THEN 'choose_prompt_mismatch' END
FROM choices ch
JOIN kept a ON a.interaction_id = ch.c.chosen
JOIN kept b ON b.interaction_id = ch.c.other
WHERE getvariable('b_pref') AND getvariable('b_pref_choose')
-- preference pairs from regenerations: the r-th accepted vs the r-th rejected of a group
UNION ALL
SELECT 'pref', 'regen', a.interaction_id, b.interaction_id, NULL, a.completion, b.completion,
    CASE WHEN a.completion = b.completion THEN 'identical_texts' END
FROM regen a JOIN regen b
  ON a.prompt_key = b.prompt_key AND a.r = b.r
 AND CASE getvariable('b_regen_within') WHEN 'user' THEN a.user_id = b.user_id
          WHEN 'session' THEN a.session_id = b.session_id ELSE true END
WHERE a.outcome = 'accept' AND b.outcome = 'reject' AND a.r <= getvariable('b_max_regen')
  AND getvariable('b_pref')
-- KTO: accept -> desirable, reject -> undesirable, edit -> both
UNION ALL
SELECT 'kto', origin, interaction_id, NULL, outcome = 'accept', completion, NULL, NULL
FROM o WHERE outcome IN ('accept', 'reject') AND getvariable('b_kto')
UNION ALL
SELECT 'kto', 'edit', interaction_id, NULL, true, edited_text, NULL, NULL
FROM o WHERE outcome = 'edit' AND getvariable('b_kto')
UNION ALL
SELECT 'kto', 'edit', interaction_id, NULL, false, completion, NULL, NULL
FROM o WHERE outcome = 'edit' AND getvariable('b_kto');
