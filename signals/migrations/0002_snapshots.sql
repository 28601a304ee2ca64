-- 0002: dataset snapshots written by `signals build`, and which interactions each holds,
-- so that `signals forget USER` can find and revoke every snapshot with the user's data.

CREATE TABLE IF NOT EXISTS snapshots (
    version        VARCHAR PRIMARY KEY,    -- "<recipe>-<content hash>", the snapshot directory name
    recipe_name    VARCHAR NOT NULL,
    path           VARCHAR NOT NULL,       -- the snapshot directory as written
    manifest       JSON NOT NULL,          -- manifest.json as written
    created_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,            -- set once; a revoked snapshot is never trained on again
    revoked_reason VARCHAR
);

CREATE TABLE IF NOT EXISTS snapshot_members (
    version        VARCHAR NOT NULL,       -- snapshots.version
    interaction_id VARCHAR NOT NULL,       -- an interaction whose text is in the snapshot
    user_id        VARCHAR                 -- its user (NULL when anonymous)
);
