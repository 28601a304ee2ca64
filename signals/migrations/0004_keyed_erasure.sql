-- 0004: erasure that reaches every copy (issue 14).
-- Tombstones, forgotten interactions and snapshot membership hold keyed hashes
-- (HMAC-SHA256 under a key kept outside the store, signals/keys.py). The key is not in
-- SQL, so this migration only marks the old rows as unkeyed ('sha256'); signals.keys.install
-- converts them once, under the key, and sets id_hash to its scheme.
INSERT INTO settings VALUES ('id_hash', 'sha256') ON CONFLICT DO NOTHING;

-- snapshot_members: the keyed hash of every user whose text a member row holds (the
-- interaction's owner, the author of an edit or a choice on it); user_id stays NULL.
ALTER TABLE snapshot_members ADD COLUMN user_hash VARCHAR;

-- Which interactions an LLM-judge verdict is about (its cache key is a hash, so forget
-- cannot tell otherwise). A table of its own, not a judgments column: eval/judges.py
-- inserts judgments rows positionally. Judgments with no row here are pre-0004 and are
-- deleted by every forget (it cannot tell whose text they hold).
CREATE TABLE IF NOT EXISTS judgment_subjects (
    key            VARCHAR NOT NULL,       -- judgments.key
    interaction_id VARCHAR NOT NULL        -- an interaction whose text was in the judged prompt/answers
);
