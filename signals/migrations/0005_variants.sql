-- 0005: exported serving variants of a run (issue 15, serve/export.py, `python -m serve export RUN`).
-- One row per (run, variant): the merged model and its weight-only quantized copies, their
-- size on disk, measured speed and the gate decision that lets (or not) a variant be served.
-- A re-export replaces the row; every evaluation stays in `decisions` (keyed by eval_id).

CREATE TABLE IF NOT EXISTS variants (
    run_id         VARCHAR NOT NULL,       -- the exported run (runs.run_id)
    variant        VARCHAR NOT NULL,       -- merged | int8 | int4
    variant_run_id VARCHAR,                -- <run_id>-<variant>: its runs/decisions rows (NULL for merged)
    path           VARCHAR,                -- the from_pretrained folder to serve (NULL when skipped)
    format         VARCHAR,                -- e.g. safetensors float32, torchao Int8WeightOnlyConfig
    quantization   JSON,                   -- the quantization settings, as written in config.json
    bytes          BIGINT,                 -- the whole folder on disk (weights, tokenizer, configs)
    weight_bytes   BIGINT,                 -- the *.safetensors files only
    tokens_per_s   DOUBLE,                 -- batched greedy generation, generated tokens per second
    latency_p50_ms DOUBLE,                 -- one request at a time, median time to the full answer
    bench          JSON,                   -- how speed was measured (prompts, tokens, device, threads)
    eval_id        VARCHAR,                -- decisions.eval_id of the non-inferiority evaluation
    decision       VARCHAR NOT NULL,       -- promote (servable) | reject | inconclusive | reference | skipped | unevaluated
    reasons        JSON,                   -- the gate's reasons, or why the variant was skipped
    created_at     TIMESTAMPTZ,
    PRIMARY KEY (run_id, variant)
);
