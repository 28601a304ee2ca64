"""The two models an evaluation compares, loaded through `train` with eval's error policy.

    run = read_run("runs/dpo_lora_tiny/20260101-120000")   # train.rundir.read_run (contract 2)
    model, tok = load_run_model(run)            # full model/, or base + PEFT adapter/
    model, tok = load_model("models/tiny")      # a baseline: folder or hub id

The run directory belongs to `train.rundir` and model loading to `train.models`; here
any failure becomes an `EvalError`, which the harness records as `inconclusive`.
"""

from __future__ import annotations

from pathlib import Path

from eval import EvalError
from train.rundir import Run, RunError
from train.rundir import read_run as _read_run

__all__ = ["Run", "read_run", "load_model", "load_run_model"]


def read_run(run_dir: str | Path) -> Run:
    """The candidate run; a missing or incomplete run directory is an EvalError."""
    try:
        return _read_run(run_dir)
    except RunError as e:
        raise EvalError(f"candidate {e}") from None


def load_model(name_or_path: str, model_cfg=None, *, what: str = "baseline", chat_template: str | None = None):
    """(model in eval mode, tokenizer) from a folder or hub id; any failure is an EvalError."""
    from train.models import load_for_inference

    try:
        return load_for_inference(str(name_or_path), model_cfg, chat_template=chat_template)
    except Exception as e:  # noqa: BLE001 - surface any loader failure as a clear eval error
        raise EvalError(f"{what} model {str(name_or_path)!r} cannot be loaded: {type(e).__name__}: {e}") from e


def load_run_model(run: Run, model_cfg=None):
    """The candidate: run_dir/model if saved, else base model + run_dir/adapter (merged in memory)."""
    from train.models import load_run_for_inference

    try:
        return load_run_for_inference(run, model_cfg)
    except Exception as e:  # noqa: BLE001
        where = run.model_path or f"adapter {run.adapter_path} on base {run.base_model!r}"
        raise EvalError(f"candidate {run.run_id}: {where} cannot be loaded: {type(e).__name__}: {e}") from e
