"""Optional MLflow logging of a decision (only when `mlflow` is importable).

Uses registered-model aliases (`production`), not the deprecated stages: each
evaluated run becomes a model version whose source is its served model folder.
"""

from __future__ import annotations

import math


def log_to_mlflow(run, result: dict, metrics: list, model_name: str | None = None) -> bool:
    """Log metrics and the decision to MLflow; False (and nothing done) without mlflow."""
    try:
        import mlflow
        from mlflow import MlflowClient
    except ImportError:
        print("eval: eval.registry.mlflow is on but mlflow is not installed; skipped")
        return False

    mlflow.set_experiment(run.exp_name or "eval")
    with mlflow.start_run(run_name=result["eval_id"]) as active:
        mlflow.set_tags({"run_id": run.run_id, "decision": result["decision"],
                         "baseline": result["baseline"], "snapshot_version": result["snapshot_version"]})
        for m in metrics:
            for key in ("baseline", "candidate", "diff", "ci_low", "ci_high"):
                value = getattr(m, key)
                if isinstance(value, float) and math.isfinite(value):
                    mlflow.log_metric(f"{m.name}.{key}", value)
        mlflow.log_dict({k: v for k, v in result.items() if k != "_metrics"}, "decision.json")
        client = MlflowClient()
        name = model_name or run.exp_name or "model"
        try:
            client.get_registered_model(name)
        except Exception:  # noqa: BLE001 - mlflow raises its own not-found error type
            client.create_registered_model(name)
        version = client.create_model_version(name, source=str(run.serve_path), run_id=active.info.run_id,
                                              tags={"run_id": run.run_id, "decision": result["decision"]})
        if result.get("promoted"):
            client.set_registered_model_alias(name, "production", version.version)
    return True
