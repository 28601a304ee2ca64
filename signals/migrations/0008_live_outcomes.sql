-- 0008: per-interaction live outcomes, materialized (issue 16, eval/live.py refresh_outcomes).
-- One row per interaction: what the live metrics read, under the default outcome rules
-- (signals.recipe defaults). eval.live.refresh_outcomes keeps it current incrementally:
-- it recomputes only the interactions touched by rows of ingests newer than the
-- watermark, and those listed in live_outcomes_dirty; rows written without an ingest id
-- (tests, hand inserts) make it rebuild the whole table. A connection that cannot refresh
-- (read-only) uses the table only when nothing has changed since, else computes on the fly.
-- Holds user ids: signals.privacy.forget and retain delete the rows of the interactions they
-- delete in the same transaction, and list the interactions whose feedback they changed.

CREATE TABLE IF NOT EXISTS live_outcomes (
    interaction_id VARCHAR NOT NULL,
    model_id       VARCHAR,
    user_id        VARCHAR NOT NULL,       -- coalesce(user_id, '#' || interaction_id): a missing user is its own
    app            VARCHAR,
    task           VARCHAR,
    ts             TIMESTAMPTZ NOT NULL,   -- the interaction's time
    outcome        VARCHAR,                -- accept | edit | reject | NULL (no decisive feedback)
    edit_change    DOUBLE,                 -- an edit outcome's normalized Levenshtein distance
    rating         DOUBLE,                 -- the latest rating
    wins           BIGINT NOT NULL,        -- choose events this answer won
    losses         BIGINT NOT NULL,        -- choose events it lost
    latency_ms     DOUBLE                  -- metadata.latency_ms
);

-- The one row saying what the table is current with.
CREATE TABLE IF NOT EXISTS live_outcomes_state (
    name                  VARCHAR PRIMARY KEY,   -- 'default'
    rules                 VARCHAR NOT NULL,      -- the outcome rules and SQL version it was computed with (JSON)
    ingest_watermark      BIGINT NOT NULL,       -- max(ingests.ingest_id) covered
    unlogged_interactions BIGINT NOT NULL,       -- interactions with no ingest_id at the refresh
    unlogged_feedback     BIGINT NOT NULL,       -- feedback events with no ingest_id at the refresh
    refreshed_at          TIMESTAMPTZ
);

-- Interactions whose feedback changed other than by an ingest (forget, retention): recomputed next refresh.
CREATE TABLE IF NOT EXISTS live_outcomes_dirty (
    interaction_id VARCHAR NOT NULL
);
