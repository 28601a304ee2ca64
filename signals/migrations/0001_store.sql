-- 0001: the signal store (interactions, feedback, quarantine, ingests, privacy state).
-- Column names here are the contract the builders and eval read; add, never rename.

CREATE TABLE IF NOT EXISTS ingests (
    ingest_id     BIGINT PRIMARY KEY,      -- sequence-like, assigned by the ingester
    path          VARCHAR NOT NULL,        -- the source file as given
    content_hash  VARCHAR NOT NULL,        -- sha256 of the file bytes; same hash = no-op re-ingest
    source        VARCHAR,                 -- mapping name (native, openai, hh-rlhf, ...)
    records       BIGINT,                  -- records read
    interactions  BIGINT,                  -- interactions added
    feedback      BIGINT,                  -- feedback events added
    duplicates    BIGINT,                  -- records already in the store
    quarantined   BIGINT,                  -- records sent to quarantine
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS interactions (
    interaction_id VARCHAR PRIMARY KEY,    -- one model output shown to a user
    ts             TIMESTAMPTZ NOT NULL,   -- when it was shown (stored as UTC)
    user_id        VARCHAR,
    session_id     VARCHAR,
    app            VARCHAR,                -- product surface (e.g. support-reply)
    task           VARCHAR,                -- task within the app
    model_id       VARCHAR,                -- the model that produced the completion
    prompt         JSON NOT NULL,          -- chat messages: [{"role": ..., "content": ...}, ...]
    completion     VARCHAR NOT NULL,       -- the model output shown
    metadata       JSON,
    ingest_id      BIGINT,                 -- ingests.ingest_id it came from
    source_row     BIGINT                  -- line (JSONL/CSV) or row (Parquet) in that source
);

CREATE TABLE IF NOT EXISTS feedback (
    event_id             VARCHAR PRIMARY KEY,
    interaction_id       VARCHAR NOT NULL, -- may precede its interaction (pending until it arrives)
    ts                   TIMESTAMPTZ NOT NULL,
    kind                 VARCHAR NOT NULL CHECK (kind IN ('accept', 'edit', 'reject', 'rate', 'choose')),
    edited_text          VARCHAR,          -- edit: the user's corrected text (gold)
    score                DOUBLE,           -- rate: the rating as given
    other_interaction_id VARCHAR,          -- choose: the candidate not chosen
    user_id              VARCHAR,          -- optional; else the interaction's user
    metadata             JSON,
    ingest_id            BIGINT,
    source_row           BIGINT
);

-- Feedback whose interaction has not arrived (yet).
CREATE VIEW IF NOT EXISTS pending_feedback AS
SELECT f.* FROM feedback f
WHERE NOT EXISTS (SELECT 1 FROM interactions i WHERE i.interaction_id = f.interaction_id);

CREATE TABLE IF NOT EXISTS quarantine (
    source_path   VARCHAR NOT NULL,        -- the file
    source_row    BIGINT,                  -- line or row number (1-based)
    field         VARCHAR,                 -- the offending field, when one is to blame
    reason        VARCHAR NOT NULL,        -- short machine-readable reason (malformed_json, missing_field, ...)
    detail        VARCHAR,                 -- human-readable explanation
    raw           VARCHAR,                 -- the raw record as read
    user_id       VARCHAR,                 -- when recoverable, so `forget` can purge it
    ingest_id     BIGINT,
    quarantined_at TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS optouts (
    user_id   VARCHAR PRIMARY KEY,         -- kept in the store, never exported
    ts        TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS tombstones (
    user_hash VARCHAR PRIMARY KEY,         -- sha256 of the forgotten user_id; blocks re-ingest
    ts        TIMESTAMPTZ
);

-- Interactions of forgotten users: feedback-only logs that name them stay out too.
CREATE TABLE IF NOT EXISTS forgotten_interactions (
    interaction_hash VARCHAR PRIMARY KEY,  -- sha256 of the interaction_id
    ts               TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS settings (
    key   VARCHAR PRIMARY KEY,             -- e.g. retention_days
    value VARCHAR
);
