"""What a finished run leaves beside its weights: merged model, model card, manifest.

Runs in the parent after all ranks are done, so there is exactly one writer. The
manifest (contract 2) is written last: its presence marks the run as finished,
and a rerun of the same command then starts a new run instead of resuming.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig

from train.card import write_card
from train.config import ROOT, peft_node
from train.methods import METHODS
from train.rundir import MANIFEST, write_json
from train.runner import final_dir, stage_dirs

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "deepspeed",
            "hydra-core", "tokenizers")


def git_state() -> dict:
    """Commit and dirty flag of the checkout (None outside git)."""
    def run(*args):
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None
    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def save_merged(cfg: DictConfig) -> Path:
    """Base + adapter merged into run_dir/model: save_pretrained layout with tokenizer,
    chat template and generation config, loadable by vLLM / TGI / SGLang."""
    from peft import PeftModel

    from train.models import load_causal_lm, load_tokenizer

    m = cfg.model
    head = METHODS[cfg.method.name].head
    extra = {"auto_class": "AutoModelForSequenceClassification", "num_labels": 1} if head == "seq_cls" else {}
    adapter = final_dir(cfg)
    tok = load_tokenizer(str(adapter))
    base = load_causal_lm(str(m.name_or_path), dtype=str(m.dtype), revision=m.get("revision"),
                          trust_remote_code=bool(m.get("trust_remote_code")), tokenizer=tok, **extra)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    out = Path(cfg.run_dir) / "model"
    merged.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def write_manifest(cfg: DictConfig, started: float) -> dict:
    """Merge (if asked), write model cards and manifest.json; return the manifest."""
    run_dir = Path(cfg.run_dir)
    stages = []
    for node, stage_dir in stage_dirs(cfg):
        done = json.loads((stage_dir / "done.json").read_text())
        stages.append({"method": str(node.name), "dir": str(stage_dir.relative_to(run_dir)),
                       "metrics": done["metrics"]})
    peft = peft_node(cfg) is not None
    model_dir = None
    if not peft:
        model_dir = "model"
    elif cfg.get("save_merged"):
        save_merged(cfg)
        model_dir = "model"
    snap = cfg.resolved.snapshot
    last = stages[-1]["metrics"]
    manifest = {
        "run_id": str(cfg.run_id), "exp_name": str(cfg.exp_name),
        "method": str(cfg.method.name) if len(stages) == 1 else str(stages[-1]["method"]),
        "methods": [s["method"] for s in stages],
        "snapshot_version": str(snap.version), "snapshot_path": str(snap.path),
        "base_model": str(cfg.model.name_or_path),
        "base_model_revision": cfg.model.get("revision") or last.get("base_model_commit"),
        "peft": peft,
        "artifacts": {"adapter": "adapter" if peft else None, "model": model_dir},
        "metrics": {k: v for k, v in last.items() if k not in ("resumed_from", "base_model_commit")},
        "stages": stages,
        "tokens_seen": sum(int(s["metrics"].get("num_input_tokens_seen") or 0) for s in stages),
        "wall_time_s": round(time.time() - started, 3),
        "resumed": any(s["metrics"].get("resumed_from") for s in stages),
        "git": git_state(), "packages": package_versions(),
        "config": "config.yaml", "tensorboard": "tensorboard",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_card(run_dir, manifest)
    write_json(run_dir / MANIFEST, manifest)
    return manifest
