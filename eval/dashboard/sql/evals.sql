-- Every recorded evaluation with its decision, candidate run and the primary metric
-- named by the gate config it was judged under (fallback: preference_accuracy).
SELECT
    d.eval_id,
    d.run_id,
    d.decision,
    d.reasons,
    d.gate_config,
    d.eval_config,
    d.baseline                                          AS baseline_model,
    d.snapshot_version,
    d.examples_dir,
    d.error,
    d.created_at,
    r.exp_name,
    r.method,
    r.base_model,
    r.peft,
    r.model_path,
    r.snapshot_version                                  AS train_snapshot,
    coalesce(json_extract_string(d.gate_config, '$.primary'), 'preference_accuracy') AS primary_metric
FROM decisions d
LEFT JOIN runs r USING (run_id)
ORDER BY d.created_at, d.eval_id
