-- Build step 1: every interaction, parsed once, with the FIRST reason it is excluded
-- (NULL = kept) and its split bucket. Parameters are session variables
-- (getvariable('b_*')) set by signals/build.py from the recipe with bound values.
-- b_norm(x): whitespace runs to one space, then trimmed (the one text normalization).
CREATE OR REPLACE TEMP MACRO b_norm(x) AS trim(regexp_replace(x, '\s+', ' ', 'g'));
CREATE OR REPLACE TEMP TABLE b_int AS
WITH forgotten AS (          -- users whose tombstone (sha256 of user_id) is in the store
    SELECT u.user_id
    FROM (SELECT DISTINCT user_id FROM interactions WHERE user_id IS NOT NULL) u
    JOIN tombstones t ON t.user_hash = sha256(u.user_id)
),
parsed AS (
    SELECT
        i.interaction_id, i.ts, i.user_id, i.session_id, i.app, i.task, i.model_id, i.completion,
        try(from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]')) AS prompt,
        g.source
    FROM interactions i LEFT JOIN ingests g ON g.ingest_id = i.ingest_id
),
measured AS (
    SELECT *,
        coalesce(list_sum(list_transform(prompt, lambda m: length(coalesce(m.content, '')))), 0) AS prompt_chars,
        length(completion) AS completion_chars,
        -- the normalized prompt (roles and contents, lower-case, whitespace collapsed), as a hash
        md5_number(b_norm(lower(array_to_string(
            list_transform(prompt, lambda m: coalesce(m.role, '') || ': ' || coalesce(m.content, '')), chr(10))))) AS prompt_key,
        -- the normalized last user message, for matching benchmark prompts
        md5_number(b_norm(lower(coalesce(list_filter(prompt, lambda m: m.role = 'user')[-1].content, '')))) AS last_user_key
    FROM parsed
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
    interaction_id, ts, user_id, session_id, app, task, model_id, prompt, completion,
    prompt_key, last_user_key, excluded,
    -- split bucket in [0, 1e6): a stable hash of the split group (time splits use ts instead)
    md5_number(getvariable('b_seed') || chr(31) || CASE getvariable('b_split_method')
        WHEN 'user' THEN coalesce('u:' || user_id, 'p:' || prompt_key::VARCHAR)
        WHEN 'session' THEN coalesce('s:' || session_id, 'p:' || prompt_key::VARCHAR)
        ELSE 'p:' || prompt_key::VARCHAR END) % 1000000 AS split_bucket
FROM judged;
