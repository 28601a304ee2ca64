-- Build step 1: every interaction, parsed once, with the FIRST reason it is excluded
-- (NULL = kept), its hashed normalized prompt and its split bucket. Parameters are session variables
-- (getvariable('b_*')) set by signals/build/steps.py from the recipe with bound values;
-- build_normalize is build_macros.sql's.
CREATE OR REPLACE TEMP TABLE build_interactions AS
WITH forgotten AS (          -- users whose tombstone (keyed hash of user_id, signals/keys.py) is in the store
    SELECT u.user_id
    FROM (SELECT DISTINCT user_id FROM interactions WHERE user_id IS NOT NULL) u
    JOIN tombstones t ON t.user_hash = keyed_hash(u.user_id)
),
parsed AS (
    SELECT
        i.interaction_id, i.rowid AS rid, i.ts, i.user_id, i.session_id, i.app, i.task, i.model_id, i.completion,
        try(from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]')) AS prompt,
        g.source
    FROM interactions i LEFT JOIN ingests g ON g.ingest_id = i.ingest_id
),
texts AS (
    SELECT *,
        -- the prompt as one text: roles and contents, lower-case
        lower(array_to_string(list_transform(prompt,
            lambda m: coalesce(m.role, '') || ': ' || coalesce(m.content, '')), chr(31))) AS p_text,
        -- the last user message, only when there are benchmark prompts to match
        CASE WHEN getvariable('b_has_bench')
             THEN lower(coalesce(list_filter(prompt, lambda m: m.role = 'user')[-1].content, '')) END AS u_text
    FROM parsed
),
measured AS (
    SELECT * EXCLUDE (p_text, u_text),
        coalesce(list_sum(list_transform(prompt, lambda m: length(coalesce(m.content, '')))), 0) AS prompt_chars,
        length(completion) AS completion_chars,
        md5_number_lower(build_normalize(p_text)) AS prompt_key,   -- the normalized prompt, hashed
        md5_number_lower(build_normalize(u_text)) AS last_user_key
    FROM texts
),
judged AS (
    SELECT *,
        CASE
            WHEN user_id IN (SELECT user_id FROM forgotten) THEN 'privacy:forgotten'
            WHEN user_id IN (SELECT user_id FROM optouts) THEN 'privacy:optout'
            WHEN ts < getvariable('b_retention_cutoff') THEN 'privacy:retention'
            WHEN ts < getvariable('b_since') OR ts >= getvariable('b_until') THEN 'filter:time'
            WHEN len(getvariable('b_sources')) > 0 AND NOT coalesce(list_contains(getvariable('b_sources'), source), false)
                THEN 'filter:source'
            WHEN len(getvariable('b_apps')) > 0 AND NOT coalesce(list_contains(getvariable('b_apps'), app), false)
                THEN 'filter:app'
            WHEN len(getvariable('b_tasks')) > 0 AND NOT coalesce(list_contains(getvariable('b_tasks'), task), false)
                THEN 'filter:task'
            WHEN len(getvariable('b_models')) > 0 AND NOT coalesce(list_contains(getvariable('b_models'), model_id), false)
                THEN 'filter:model'
            WHEN len(getvariable('b_users')) > 0 AND NOT coalesce(list_contains(getvariable('b_users'), user_id), false)
                THEN 'filter:user'
            WHEN coalesce(list_contains(getvariable('b_exclude_users'), user_id), false) THEN 'filter:user'
            WHEN prompt IS NULL OR len(prompt) = 0
                 OR len(list_filter(prompt, lambda m: m.content IS NULL
                        OR m.role NOT IN ('system', 'user', 'assistant', 'tool'))) > 0
                 OR prompt[-1].role = 'assistant' THEN 'invalid:prompt'
            WHEN prompt_chars < getvariable('b_min_prompt') OR prompt_chars > getvariable('b_max_prompt')
                THEN 'filter:prompt_length'
            WHEN completion_chars < getvariable('b_min_completion') OR completion_chars > getvariable('b_max_completion')
                THEN 'filter:completion_length'
        END AS excluded
    FROM measured
)
SELECT
    -- no texts, app, model or users here (the export reads them from `interactions`; rid, the
    -- interaction's row in the store, is the build's key for it): memory stays small
    interaction_id, rid, ts,
    hash(completion) AS completion_hash,       -- equality within this build (dedup, identical pairs)
    prompt_key, last_user_key, excluded,
    -- whether a prompt message or the completion may hold PII (the redaction pass reads only these)
    CASE WHEN getvariable('b_redact') AND excluded IS NULL
         THEN coalesce(regexp_matches(completion, getvariable('b_pii_re'))
              OR list_bool_or(list_transform(prompt, lambda m: regexp_matches(m.content, getvariable('b_pii_re')))),
                       true)
         ELSE false END AS pii,
    -- split bucket in [0, 1e6): a stable hash of the split group and the seed (time splits use ts)
    CASE getvariable('b_split_method')
        WHEN 'user' THEN coalesce(md5_number_lower(getvariable('b_seed') || chr(31) || user_id),
                                  xor(prompt_key, getvariable('b_seed_hash')))
        WHEN 'session' THEN coalesce(md5_number_lower(getvariable('b_seed') || chr(31) || session_id),
                                     xor(prompt_key, getvariable('b_seed_hash')))
        ELSE xor(prompt_key, getvariable('b_seed_hash'))
    END % 1000003 % 1000000 AS split_bucket,
    -- the user, for a per-user cap, and where regenerations are paired (prompt, user or
    -- session), as hashes: equality is all they are used for (NULL: no cap, no pairing)
    CASE WHEN getvariable('b_per_user') IS NOT NULL AND user_id IS NOT NULL THEN hash(user_id) END AS cap_user,
    CASE getvariable('b_regen_within')
        WHEN 'user' THEN CASE WHEN user_id IS NOT NULL THEN hash(user_id) END
        WHEN 'session' THEN CASE WHEN session_id IS NOT NULL THEN hash(session_id) END
        ELSE 0 END::UBIGINT AS regen_scope
FROM judged;
