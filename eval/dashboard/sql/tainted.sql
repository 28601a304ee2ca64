-- Models trained on a revoked snapshot (e.g. one that held a user who was later
-- forgotten), and whether each is, or ever was, behind an alias.
WITH aliased AS (
    SELECT run_id, max(ts) AS last_promoted
    FROM aliases
    WHERE action = 'promote' AND run_id IS NOT NULL
    GROUP BY run_id
)
SELECT
    r.run_id,
    r.exp_name,
    r.method,
    r.snapshot_version,
    s.revoked_at,
    s.revoked_reason,
    a.last_promoted
FROM runs r
JOIN snapshots s ON s.version = r.snapshot_version
LEFT JOIN aliased a USING (run_id)
WHERE s.revoked_at IS NOT NULL
ORDER BY s.revoked_at DESC, r.run_id
