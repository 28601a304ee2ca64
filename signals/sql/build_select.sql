-- Build step 4: choose which candidates become examples, and in which split.
--   split: time (ts >= b_cutoff is eval) or the interaction's split bucket (hash of
--          its normalized prompt, user or session) < b_eval_fraction;
--   dedup: one example per kind and (normalized prompt, texts, label), the earliest;
--   cap:   at most b_per_user examples per user and kind (a seeded, stable sample);
--   benchmark: no train example whose last user message is a benchmark prompt;
--   decontamination: a normalized prompt left in both splits is dropped from train
--          (b_decontaminate = 'drop_train') or from eval ('drop_eval').
-- `dropped` says why a candidate is not exported (NULL = exported).
CREATE OR REPLACE TEMP TABLE build_examples AS
WITH dup_keys AS (  -- de-duplication groups with more than one candidate, found by a hash of
                   -- the key (cheap; most groups have one member) and ranked exactly below
    SELECT hash(kind, prompt_key, a_hash, b_hash, label) AS k FROM build_candidates
    WHERE pre_drop IS NULL AND getvariable('b_dedup')
    GROUP BY k HAVING count(*) > 1
),
dups AS (
    SELECT rowid AS row, row_number() OVER (PARTITION BY kind, prompt_key, a_hash, b_hash, label
                                            ORDER BY ts, rid, other_rid) AS dup_rank
    FROM build_candidates
    WHERE pre_drop IS NULL AND hash(kind, prompt_key, a_hash, b_hash, label) IN (SELECT k FROM dup_keys)
),
d AS (
    SELECT c.*, coalesce(x.dup_rank, 1) AS dup_rank
    FROM build_candidates c LEFT JOIN dups x ON x.row = c.rowid
),
u AS (             -- the per-user cap's window runs only when a cap is set (signals/build/steps.py drops this block)
    SELECT *,
        -- cap:begin
        CASE WHEN pre_drop IS NULL AND dup_rank = 1 AND cap_user IS NOT NULL
             THEN row_number() OVER (
                PARTITION BY kind, cap_user, pre_drop IS NULL AND dup_rank = 1
                ORDER BY cap_order, rid, origin, other_rid, label) END
        -- cap:end
        AS user_rank
    FROM d
),
s AS (
    SELECT *,
        CASE WHEN pre_drop IS NOT NULL THEN pre_drop::VARCHAR
             WHEN dup_rank > 1 THEN 'duplicate'
             WHEN user_rank > getvariable('b_per_user') THEN 'user_cap'
             WHEN NOT is_eval AND in_bench THEN 'benchmark' END AS drop1
    FROM u
),
eval_prompts AS (SELECT DISTINCT prompt_key FROM s WHERE drop1 IS NULL AND is_eval),
train_prompts AS (SELECT DISTINCT prompt_key FROM s WHERE drop1 IS NULL AND NOT is_eval)
SELECT kind, origin, rid, other_rid, label, a_edit, b_other, is_eval,
    coalesce(drop1,
        -- decontaminate:begin (signals/build/steps.py drops this block for hash splits: a prompt has one split)
        CASE
        WHEN getvariable('b_decontaminate') = 'drop_train' AND NOT is_eval
             AND prompt_key IN (SELECT prompt_key FROM eval_prompts) THEN 'decontaminated'
        WHEN getvariable('b_decontaminate') = 'drop_eval' AND is_eval
             AND prompt_key IN (SELECT prompt_key FROM train_prompts) THEN 'decontaminated' END
        -- decontaminate:end
    )::ENUM('benchmark', 'choose_prompt_mismatch', 'decontaminated', 'duplicate', 'identical_texts', 'user_cap')
    AS dropped
FROM s;
DROP TABLE build_candidates;   -- selection is done: its memory is the export's
-- The snapshot's members: every interaction whose text is exported (the chosen and the
-- rejected side of pairs). The PII pass reads only these; the store records them with their
-- users (snapshot_members), so that signals forget revokes every snapshot that held a user.
CREATE OR REPLACE TEMP TABLE build_members AS
SELECT DISTINCT rid FROM (
    SELECT rid FROM build_examples WHERE dropped IS NULL
    UNION ALL SELECT other_rid FROM build_examples WHERE dropped IS NULL AND other_rid IS NOT NULL);
