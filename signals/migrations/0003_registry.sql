-- 0003: the model registry (issue 6, eval/). Written by `python -m eval`, read by the
-- dashboard. One row per trained run, one per metric per evaluation, one decision per
-- evaluation, an append-only alias log, and the LLM-judge cache.

CREATE TABLE IF NOT EXISTS runs (
    run_id           VARCHAR PRIMARY KEY,  -- manifest.json run_id (contract 2)
    exp_name         VARCHAR,
    method           VARCHAR,              -- sft | dpo | kto | orpo | reward
    run_dir          VARCHAR NOT NULL,     -- absolute path of runs/<exp_name>/<run_id>
    model_path       VARCHAR,              -- run_dir/model or run_dir/adapter (what gets served)
    base_model       VARCHAR,              -- name_or_path the run started from
    peft             BOOLEAN,
    snapshot_version VARCHAR,              -- snapshots.version it was trained on (taint source)
    manifest         JSON,                 -- the run's manifest.json as read
    registered_at    TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS eval_results (
    eval_id     VARCHAR NOT NULL,          -- one evaluation job (decisions.eval_id)
    run_id      VARCHAR NOT NULL,          -- the candidate
    metric      VARCHAR NOT NULL,          -- preference_accuracy, sft_loglik, kto_auc, winrate, ...
    baseline    DOUBLE,                    -- the baseline's value on the same examples
    candidate   DOUBLE,                    -- the candidate's value
    diff        DOUBLE,                    -- candidate - baseline
    ci_low      DOUBLE,                    -- paired bootstrap interval of diff
    ci_high     DOUBLE,
    n           BIGINT,                    -- examples (pairs, completions, prompts)
    mde         DOUBLE,                    -- smallest |diff| this n detects (alpha, power in eval config)
    details     JSON,                      -- extras (resamples, confidence, judge, ...)
    created_at  TIMESTAMPTZ,
    PRIMARY KEY (eval_id, metric)
);

CREATE TABLE IF NOT EXISTS decisions (
    eval_id          VARCHAR PRIMARY KEY,
    run_id           VARCHAR NOT NULL,
    decision         VARCHAR NOT NULL CHECK (decision IN ('promote', 'reject', 'inconclusive')),
    reasons          JSON,                 -- list of human-readable reasons
    gate_config      JSON,                 -- conf/gate node used
    eval_config      JSON,                 -- conf/eval node used (batch size, decoding, judge, bootstrap)
    baseline         VARCHAR,              -- the baseline model (path, hub id or production run)
    snapshot_version VARCHAR,              -- the eval split's snapshot
    examples_dir     VARCHAR,              -- per-example Parquet files of this evaluation
    error            VARCHAR,              -- set when evaluation failed (decision is never promote)
    created_at       TIMESTAMPTZ
);

-- Append-only alias log: the current target of an alias is replayed from it
-- (promote pushes, rollback pops), so every move stays on record.
CREATE TABLE IF NOT EXISTS aliases (
    seq         BIGINT PRIMARY KEY,        -- order of moves
    alias       VARCHAR NOT NULL,          -- production, ...
    action      VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
    run_id      VARCHAR,                   -- the alias target after this move (NULL: none left)
    previous_run_id VARCHAR,               -- the target before it
    eval_id     VARCHAR,                   -- the decision that justified a promote (NULL when forced)
    reason      VARCHAR,
    ts          TIMESTAMPTZ
);

-- LLM-judge verdicts, keyed by everything that determines them, so reruns cost nothing.
CREATE TABLE IF NOT EXISTS judgments (
    key         VARCHAR PRIMARY KEY,       -- sha256 of (base_url, model, template, prompt, answer_a, answer_b)
    judge_model VARCHAR,
    base_url    VARCHAR,
    verdict     VARCHAR NOT NULL,          -- A | B | tie
    raw         VARCHAR,                   -- the judge's reply text
    created_at  TIMESTAMPTZ
);
