-- 0006: live decisions (issue 16, eval/verify.py, the scheduled job's verify stage).
-- One row per night a canary was looked at: wait, promote (canary -> production) or
-- rollback (canary removed), with the live comparison it rested on. The alias moves a
-- promote or rollback makes are in `aliases`, written in the same transaction.

CREATE TABLE IF NOT EXISTS live_decisions (
    decision_id      VARCHAR PRIMARY KEY,  -- live-<utc time>-<canary run id>
    run_id           VARCHAR NOT NULL,     -- the canary
    baseline_run_id  VARCHAR,              -- production over the same window
    decision         VARCHAR NOT NULL CHECK (decision IN ('promote', 'rollback', 'wait')),
    metric           VARCHAR,              -- online.metric (eval/live.py LIVE_METRICS)
    candidate        DOUBLE,               -- the canary's stratified value
    baseline         DOUBLE,
    diff             DOUBLE,               -- candidate - baseline, stratified by app/task
    ci_low           DOUBLE,               -- bootstrap over users
    ci_high          DOUBLE,
    n_candidate      BIGINT,               -- interactions with an outcome, per side
    n_baseline       BIGINT,
    window_start     TIMESTAMPTZ,          -- when the canary started taking traffic
    window_end       TIMESTAMPTZ,
    offline_eval_id  VARCHAR,              -- the offline decision that put the run in canary (NULL: forced)
    reasons          JSON,                 -- list of human-readable reasons
    comparison       JSON,                 -- eval.live.LiveComparison.as_dict()
    online_config    JSON,                 -- the online node used
    created_at       TIMESTAMPTZ
);
