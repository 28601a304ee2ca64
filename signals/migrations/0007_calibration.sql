-- 0007: how well each judge and offline metric agrees with the users (issue 17,
-- eval/calibrate.py, `python -m eval calibrate +exp=NAME`). One row per predictor per app
-- per calibration (app '*' = all apps). The gate reads a judge's latest '*' row
-- (gate.judge.min_agreement, gate.judge.max_age_days); the dashboard shows them over time.

CREATE TABLE IF NOT EXISTS calibrations (
    calibration_id   VARCHAR NOT NULL,     -- one `eval calibrate` job
    predictor        VARCHAR NOT NULL,     -- judge:rules, judge:reward_model, logprob_margin:baseline, ...
    kind             VARCHAR NOT NULL,     -- judge | metric
    judge_key        VARCHAR,              -- eval.judges.judge_key of the judge's settings (NULL for a metric)
    app              VARCHAR NOT NULL,     -- '*' = every app of the eval split
    exp_name         VARCHAR,
    snapshot_version VARCHAR,              -- the data version the verdicts come from
    data_time        TIMESTAMPTZ,          -- newest feedback in that snapshot (its watermark), else its build time
    n                BIGINT,               -- user verdicts (preference pairs) scored
    agreement        DOUBLE,               -- share of verdicts the predictor agrees with (ties 1/2), both orders
    ci_low           DOUBLE,               -- Wilson interval of agreement
    ci_high          DOUBLE,
    kappa            DOUBLE,               -- Cohen's kappa, judge's label vs the user's, both orders
    position_bias    DOUBLE,               -- share of pairs whose verdict flips with the order (same position picked)
    ece              DOUBLE,               -- reward model: expected calibration error of sigmoid(reward margin)
    auc              DOUBLE,               -- accept vs reject (kto eval split): AUC of the predictor's score
    details          JSON,                 -- reliability curve, per-order agreement, verdict sources, settings
    created_at       TIMESTAMPTZ,
    PRIMARY KEY (calibration_id, predictor, app)
);
