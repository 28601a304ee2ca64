-- Stage 3: decide, for each valid interaction and event, new / duplicate / conflict / forgotten.
-- Only keys seen twice in this source or already in the store need a content comparison,
-- so the common case (all new) costs two key-only joins. The first occurrence wins; a
-- stored record is never changed. Out: temp tables ist and fst (ln[, idx], status, detail)
-- listing only the rows that are NOT new.
CREATE OR REPLACE TEMP TABLE ist AS
WITH ci AS (  -- keys only: a CTE used three times is materialized, and must not copy the texts
    SELECT ln, interaction_id, user_id FROM rec WHERE rtype = 'interaction' AND err IS NULL
), forgotten AS (
    SELECT ln FROM ci
    WHERE getvariable('ingest_forgets')      -- folded to false while nothing is forgotten: no hashing
      AND ((user_id IS NOT NULL AND keyed_hash(user_id) IN (SELECT user_hash FROM tombstones))
       OR keyed_hash(interaction_id) IN (SELECT interaction_hash FROM forgotten_interactions))
), keys AS (
    SELECT interaction_id FROM ci GROUP BY interaction_id HAVING count(*) > 1
    UNION
    SELECT interaction_id FROM ci SEMI JOIN interactions USING (interaction_id)
), cand AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.interaction_id ORDER BY c.ln) AS rn
    FROM rec c SEMI JOIN keys USING (interaction_id)
    WHERE c.rtype = 'interaction' AND c.err IS NULL AND c.ln NOT IN (SELECT ln FROM forgotten)
), ref AS (
    SELECT s.interaction_id, s.ts, s.user_id, s.session_id, s.app, s.task, s.model_id,
        s.prompt::VARCHAR AS prompt, s.completion, s.metadata::VARCHAR AS metadata,
        'stored from ingest ' || s.ingest_id || ' row ' || s.source_row AS origin, 0 AS pri
    FROM interactions s SEMI JOIN keys USING (interaction_id)
    UNION ALL
    SELECT interaction_id, ts, user_id, session_id, app, task, model_id, prompt::VARCHAR,
        completion, metadata::VARCHAR, 'row ' || source_row || ' of this source', 1
    FROM cand WHERE rn = 1
), ref1 AS (
    SELECT * FROM ref QUALIFY row_number() OVER (PARTITION BY interaction_id ORDER BY pri) = 1
)
SELECT ln, 'forgotten' AS status, NULL AS detail FROM forgotten
UNION ALL
SELECT c.ln,
    CASE WHEN (c.ts, c.user_id, c.session_id, c.app, c.task, c.model_id, c.prompt::VARCHAR, c.completion, c.metadata::VARCHAR)
              IS NOT DISTINCT FROM (r.ts, r.user_id, r.session_id, r.app, r.task, r.model_id, r.prompt, r.completion, r.metadata)
         THEN 'duplicate' ELSE 'conflict' END,
    'interaction_id ' || c.interaction_id || ' differs from the one ' || r.origin
FROM cand c JOIN ref1 r USING (interaction_id)
WHERE NOT (r.pri = 1 AND c.rn = 1);

CREATE OR REPLACE TEMP TABLE fst AS
WITH cf AS (
    SELECT f.* FROM fb f
    WHERE f.err IS NULL AND f.ln NOT IN (SELECT ln FROM ist WHERE status IN ('conflict', 'forgotten'))
), forgotten AS (
    SELECT ln, idx FROM cf
    WHERE getvariable('ingest_forgets')      -- folded to false while nothing is forgotten: no hashing
      AND ((user_id IS NOT NULL AND keyed_hash(user_id) IN (SELECT user_hash FROM tombstones))
       OR keyed_hash(interaction_id) IN (SELECT interaction_hash FROM forgotten_interactions))
), keys AS (
    SELECT event_id FROM cf GROUP BY event_id HAVING count(*) > 1
    UNION
    SELECT event_id FROM cf SEMI JOIN feedback USING (event_id)
), cand AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.event_id ORDER BY c.ln, c.idx) AS rn
    FROM cf c SEMI JOIN keys USING (event_id)
    WHERE (c.ln, c.idx) NOT IN (SELECT (ln, idx) FROM forgotten)
), ref AS (
    SELECT s.event_id, s.interaction_id, s.ts, s.kind, s.edited_text, s.score, s.other_interaction_id,
        s.user_id, s.metadata::VARCHAR AS metadata,
        'stored from ingest ' || s.ingest_id || ' row ' || s.source_row AS origin, 0 AS pri
    FROM feedback s SEMI JOIN keys USING (event_id)
    UNION ALL
    SELECT event_id, interaction_id, ts, kind, edited_text, score, other_interaction_id, user_id,
        metadata::VARCHAR, 'row ' || source_row || ' of this source', 1
    FROM cand WHERE rn = 1
), ref1 AS (
    SELECT * FROM ref QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY pri) = 1
)
SELECT ln, idx, 'forgotten' AS status, NULL AS detail FROM forgotten
UNION ALL
SELECT c.ln, c.idx,
    CASE WHEN (c.interaction_id, c.ts, c.kind, c.edited_text, c.score, c.other_interaction_id, c.user_id, c.metadata::VARCHAR)
              IS NOT DISTINCT FROM (r.interaction_id, r.ts, r.kind, r.edited_text, r.score, r.other_interaction_id, r.user_id, r.metadata)
         THEN 'duplicate' ELSE 'conflict' END,
    'event_id ' || c.event_id || ' differs from the one ' || r.origin
FROM cand c JOIN ref1 r USING (event_id)
WHERE NOT (r.pri = 1 AND c.rn = 1);
