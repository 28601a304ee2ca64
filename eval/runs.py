"""Read a run directory (contract 2) and load the models an evaluation compares.

    run = read_run("runs/dpo_lora_tiny/20260101-120000")
    model, tok = load_run_model(run)            # full model/, or base + PEFT adapter/
    model, tok = load_model("models/tiny")      # a baseline: folder or hub id
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eval import EvalError
from signals.manifest import read_manifest


@dataclass
class Run:
    run_id: str
    exp_name: str | None
    method: str | None
    run_dir: Path
    base_model: str | None
    snapshot_version: str | None
    snapshot_path: str | None
    peft: bool
    model_path: Path | None      # run_dir/model when saved (full or merged)
    adapter_path: Path | None    # run_dir/adapter when LoRA
    manifest: dict

    @property
    def serve_path(self) -> Path:
        return self.model_path or self.adapter_path


def read_run(run_dir: str | Path) -> Run:
    """Validate `run_dir` and its manifest.json; name what is missing."""
    d = Path(run_dir)
    if not d.is_dir():
        raise EvalError(f"candidate run directory {d} does not exist")
    mf = d / "manifest.json"
    if not mf.is_file():
        raise EvalError(f"candidate {d}: no manifest.json (not a run directory written by `python -m train`)")
    m = read_manifest(mf, EvalError)
    arts = m.get("artifacts") or {}
    model = d / arts["model"] if arts.get("model") else None
    adapter = d / arts["adapter"] if arts.get("adapter") else None
    for field, p in (("artifacts.model", model), ("artifacts.adapter", adapter)):
        if p is not None and not p.is_dir():
            raise EvalError(f"{mf} field {field!r}: {p} does not exist")
    if model is None and adapter is None:
        raise EvalError(f"{mf} field 'artifacts': neither a model nor an adapter was saved")
    if model is None and not m.get("base_model"):
        raise EvalError(f"{mf} field 'base_model': needed to load the adapter, but missing")
    return Run(run_id=str(m.get("run_id") or d.name), exp_name=m.get("exp_name"), method=m.get("method"),
               run_dir=d.resolve(), base_model=m.get("base_model"),
               snapshot_version=m.get("snapshot_version"), snapshot_path=m.get("snapshot_path"),
               peft=bool(m.get("peft")), model_path=model.resolve() if model else None,
               adapter_path=adapter.resolve() if adapter else None, manifest=m)


def load_model(name_or_path: str, model_cfg=None, *, what: str = "baseline", chat_template: str | None = None):
    """(model in eval mode, tokenizer) from a folder or hub id; any failure is an EvalError."""
    from train.models import load_causal_lm, load_tokenizer

    mc = dict(model_cfg or {})
    try:
        tok = load_tokenizer(str(name_or_path), trust_remote_code=bool(mc.get("trust_remote_code", False)),
                             chat_template=chat_template or mc.get("chat_template"))
        if chat_template:
            tok.chat_template = chat_template        # one template for both models
        model = load_causal_lm(str(name_or_path), dtype=mc.get("dtype", "float32"),
                               attn_implementation=mc.get("attn_implementation"),
                               trust_remote_code=bool(mc.get("trust_remote_code", False)), tokenizer=tok)
    except Exception as e:  # noqa: BLE001 - surface any loader failure as a clear eval error
        raise EvalError(f"{what} model {str(name_or_path)!r} cannot be loaded: {type(e).__name__}: {e}") from e
    return model.eval(), tok


def load_run_model(run: Run, model_cfg=None):
    """The candidate: run_dir/model if saved, else base model + run_dir/adapter (merged in memory)."""
    if run.model_path is not None:
        return load_model(str(run.model_path), model_cfg, what=f"candidate {run.run_id}")
    from train.models import load_causal_lm, load_tokenizer

    mc = dict(model_cfg or {})
    try:
        from peft import PeftModel

        tok = load_tokenizer(str(run.adapter_path), chat_template=mc.get("chat_template"))
        base = load_causal_lm(run.base_model, dtype=mc.get("dtype", "float32"),
                              attn_implementation=mc.get("attn_implementation"), tokenizer=tok)
        model = PeftModel.from_pretrained(base, str(run.adapter_path)).merge_and_unload()
    except Exception as e:  # noqa: BLE001
        raise EvalError(f"candidate {run.run_id}: adapter {run.adapter_path} on base {run.base_model!r} "
                        f"cannot be loaded: {type(e).__name__}: {e}") from e
    return model.eval(), tok
