-- Build step 3: every candidate example of every kind, before de-duplication, caps and
-- splits. One row per example: kind (sft | pref | kto), origin (the feedback kind that
-- made it, or regen), the interaction it comes from (rid, its row in the store, which keys
-- it in the build and orders and chunks the export; for pairs: the chosen one) and the
-- other one (other_rid: the rejected side of a choice or regeneration), and where its texts are:
--   text_a = the edit of rid (a_edit) or else its completion;
--   text_b = the completion of other_rid (b_other) or else of rid (pairs only);
-- with their hashes for de-duplication and equality. `pre_drop` is why a candidate is
-- dropped before selection (NULL = a candidate). Each row carries what selection needs of
-- its interaction (time, user, prompt hashes, split), so build_select joins nothing.
-- Every kept interaction: what the candidates need of it (is_eval: its split) and its
-- outcome (NULL: none; the chosen side of a choice need not have one). A table, not a CTE:
-- it is scanned by several branches below, and a table is built once (and spills) where a
-- CTE could be re-joined per branch.
CREATE OR REPLACE TEMP TABLE build_kept_interactions AS
SELECT i.rid, i.interaction_id, o.outcome, o.origin, d.edit_hash, i.completion_hash, i.prompt_key, i.ts,
    i.cap_user, i.regen_scope,
    -- whether the last user message is a benchmark prompt (a flag, not the key): rows stay narrow
    coalesce(i.last_user_key IN (SELECT key FROM build_benchmark_keys), false) AS in_bench,
    CASE WHEN getvariable('b_split_method') = 'time' THEN i.ts >= getvariable('b_cutoff')
         ELSE i.split_bucket < getvariable('b_eval_fraction') * 1000000 END AS is_eval
FROM build_interactions i LEFT JOIN build_outcomes o USING (rid)
LEFT JOIN build_edited_texts d ON o.outcome = 'edit' AND d.rid = o.rid
WHERE i.excluded IS NULL;
-- of build_interactions, the rest of the build needs only what the manifest and the PII pass read
CREATE OR REPLACE TEMP TABLE build_interactions AS SELECT rid, excluded, pii FROM build_interactions;
CREATE OR REPLACE TEMP TABLE build_candidates AS
WITH choices AS (       -- the latest choice per unordered pair of candidates
    SELECT max_by(struct_pack(chosen := interaction_id, other := other_interaction_id), struct_pack(ts, event_id)) AS c
    FROM feedback
    WHERE kind = 'choose' AND other_interaction_id IS NOT NULL AND interaction_id <> other_interaction_id
      AND getvariable('b_pref') AND getvariable('b_pref_choose')
    GROUP BY least(interaction_id, other_interaction_id), greatest(interaction_id, other_interaction_id)
),
regen_groups AS (  -- groups (same normalized prompt, maybe same user/session) with both outcomes
    SELECT prompt_key, regen_scope AS scope
    FROM build_kept_interactions o
    WHERE outcome IN ('accept', 'reject') AND getvariable('b_from_regen')
    GROUP BY ALL
    HAVING min(outcome) <> max(outcome)
),
regen AS (         -- the first b_max_regen of each outcome in a seeded order (only what the pairs need)
    SELECT o.rid, o.interaction_id, o.outcome, o.completion_hash, o.prompt_key, o.in_bench, o.cap_user, o.ts,
        o.is_eval, g.scope, row_number() OVER (
            PARTITION BY g.prompt_key, g.scope, o.outcome
            ORDER BY md5_number_lower(getvariable('b_seed') || chr(31) || o.interaction_id), o.rid) AS r
    FROM build_kept_interactions o JOIN regen_groups g
      ON g.prompt_key = o.prompt_key
     AND g.scope = o.regen_scope
    WHERE o.outcome IN ('accept', 'reject')
    QUALIFY r <= getvariable('b_max_regen')
),
cand AS (
-- SFT: accepted completions and edited texts
SELECT 'sft' AS kind, origin::VARCHAR AS origin, rid, interaction_id, NULL::BIGINT AS other_rid,
       NULL::VARCHAR AS other_id, NULL::BOOLEAN AS label, false AS a_edit, NULL::BOOLEAN AS b_other,
       completion_hash AS a_hash, NULL::UBIGINT AS b_hash, NULL::VARCHAR AS pre_drop, ts, cap_user, prompt_key,
       in_bench, is_eval
FROM build_kept_interactions o WHERE outcome = 'accept' AND getvariable('b_sft') AND getvariable('b_sft_accept')
UNION ALL
SELECT 'sft', origin, rid, interaction_id, NULL, NULL, NULL, true, NULL, edit_hash, NULL, NULL, ts, cap_user, prompt_key, in_bench, is_eval
FROM build_kept_interactions o WHERE outcome = 'edit' AND getvariable('b_sft') AND getvariable('b_sft_edit')
-- preference pairs from edits: chosen = edit, rejected = original (trivial edits are no edits)
UNION ALL
SELECT 'pref', 'edit', rid, interaction_id, NULL, NULL, NULL, true, false, edit_hash, completion_hash, NULL, ts, cap_user, prompt_key, in_bench, is_eval
FROM build_kept_interactions o WHERE outcome = 'edit' AND getvariable('b_pref') AND getvariable('b_pref_edit')
-- preference pairs from explicit choices
UNION ALL
SELECT 'pref', 'choose', a.rid, a.interaction_id, b.rid, b.interaction_id, NULL, false, true,
    a.completion_hash, b.completion_hash,
    CASE WHEN a.completion_hash = b.completion_hash THEN 'identical_texts'
         WHEN getvariable('b_choose_same_prompt') AND a.prompt_key <> b.prompt_key THEN 'choose_prompt_mismatch' END,
    a.ts, a.cap_user, a.prompt_key, a.in_bench, a.is_eval
FROM choices ch
JOIN build_kept_interactions a ON a.interaction_id = ch.c.chosen
JOIN build_kept_interactions b ON b.interaction_id = ch.c.other
-- preference pairs from regenerations: the r-th accepted vs the r-th rejected of a group
UNION ALL
SELECT 'pref', 'regen', a.rid, a.interaction_id, b.rid, b.interaction_id, NULL, false, true,
    a.completion_hash, b.completion_hash,
    CASE WHEN a.completion_hash = b.completion_hash THEN 'identical_texts' END,
    a.ts, a.cap_user, a.prompt_key, a.in_bench, a.is_eval
FROM regen a
JOIN regen b ON a.prompt_key = b.prompt_key AND a.scope = b.scope AND a.r = b.r
WHERE a.outcome = 'accept' AND b.outcome = 'reject' AND a.r <= getvariable('b_max_regen')
  AND getvariable('b_pref')
-- KTO: accept -> desirable, reject -> undesirable, edit -> both
UNION ALL
SELECT 'kto', origin, rid, interaction_id, NULL, NULL, outcome = 'accept', false, NULL, completion_hash, NULL, NULL, ts, cap_user, prompt_key, in_bench, is_eval
FROM build_kept_interactions o WHERE outcome IN ('accept', 'reject') AND getvariable('b_kto')
UNION ALL
SELECT 'kto', 'edit', rid, interaction_id, NULL, NULL, true, true, NULL, edit_hash, NULL, NULL, ts, cap_user, prompt_key, in_bench, is_eval
FROM build_kept_interactions o WHERE outcome = 'edit' AND getvariable('b_kto')
UNION ALL
SELECT 'kto', 'edit', rid, interaction_id, NULL, NULL, false, false, NULL, completion_hash, NULL, NULL, ts, cap_user, prompt_key, in_bench, is_eval
FROM build_kept_interactions o WHERE outcome = 'edit' AND getvariable('b_kto')
)
-- narrow rows (7M at 5M events): enums, not strings, and rids, not ids
SELECT kind::ENUM('kto', 'pref', 'sft') AS kind,
    origin::ENUM('accept', 'choose', 'edit', 'rate', 'regen', 'reject') AS origin,
    rid, other_rid, label, a_edit, b_other, a_hash, b_hash,
    pre_drop::ENUM('choose_prompt_mismatch', 'identical_texts') AS pre_drop, ts, prompt_key, in_bench, is_eval
    -- cap:begin (signals/build/steps.py drops this block when there is no per-user cap: no columns of NULLs)
    -- the user and the per-user cap's seeded, stable order of examples
    , cap_user, md5_number_lower(getvariable('b_seed') || chr(31) || interaction_id || chr(31) || origin
        || chr(31) || coalesce(other_id, '') || chr(31) || coalesce(label::VARCHAR, '')) AS cap_order
    -- cap:end
FROM cand;
-- build_candidates holds what selection needs; drop what only candidates needed
DROP TABLE build_kept_interactions;
