"""What every rank runs: the methods of one run, in order, on the frozen config.

For each method (`method`, then each `then.*`): build the TRL config from
`method.args` (plus the run's seed, output folders, device and tracking), load the
tokenizer and model (the base model, or the previous method's output), wrap with
LoRA if asked, train (resuming from the newest checkpoint of that method when
there is one), and save. A finished method leaves `stages/<i>-<name>/done.json`,
so a rerun skips it. Only the main process writes shared files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from signals.snapshot import Snapshot
from signals.snapshot import open as open_snapshot
from train.config import method_nodes, peft_node
from train.console import quiet
from train.methods import METHODS, load_object
from train.rundir import write_json


def final_dir(cfg: DictConfig) -> Path:
    """run_dir/adapter (LoRA) or run_dir/model (full fine-tune): the last method's output."""
    return Path(cfg.run_dir) / ("adapter" if peft_node(cfg) is not None else "model")


def stage_dirs(cfg: DictConfig) -> list[tuple[DictConfig, Path]]:
    return [(node, Path(cfg.run_dir) / "stages" / f"{i}-{node.name}")
            for i, node in enumerate(method_nodes(cfg))]


def trl_args(cfg: DictConfig, node: DictConfig, stage_dir: Path, snapshot: Snapshot, has_eval: bool):
    """The TRL *Config for one method: `method.args` first, run-level defaults under it."""
    import torch

    spec = METHODS[node.name]
    given = OmegaConf.to_container(node.get("args") or {}, resolve=True)
    tracking = cfg.get("tracking") or {}
    defaults = {
        "output_dir": str(stage_dir / "checkpoints"),
        "seed": int(cfg.seed),
        "report_to": list(tracking.get("report_to") or []) or "none",
        "run_name": f"{cfg.exp_name}/{cfg.run_id}/{node.name}",
        "include_num_input_tokens_seen": "non_padding",
        "save_strategy": "steps",
        "eval_strategy": "no",
        "disable_tqdm": quiet(),
    }
    if tracking.get("project"):
        defaults["project"] = str(tracking.project)
        os.environ.setdefault("WANDB_PROJECT", str(tracking.project))
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", str(tracking.project))
    # TRL turns activation (gradient) checkpointing on by default; the model config decides
    fields = {f.name for f in dataclasses.fields(load_object(spec.config))}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    if "gradient_checkpointing" not in given and "activation_checkpointing" not in given:
        defaults[ckpt] = bool(cfg.model.get("gradient_checkpointing", False))
    if not torch.cuda.is_available():
        defaults.update(use_cpu=True, bf16=False, fp16=False)   # TRL defaults bf16=True
    if spec.kind == "kto":
        defaults.update(snapshot.manifest.get("kto_weights") or {})
    if not has_eval:
        given.pop("eval_strategy", None)
    merged = {**defaults, **given}
    return load_object(spec.config)(**merged)


def load_model(cfg: DictConfig, node: DictConfig, tokenizer, previous: Path | None):
    """(model, peft_config) for one method: base or previous output, LoRA when asked."""
    spec = METHODS[node.name]
    m = cfg.model
    common = {"dtype": str(m.dtype), "attn_implementation": m.get("attn_implementation"),
              "trust_remote_code": bool(m.get("trust_remote_code", False)), "tokenizer": tokenizer}
    if spec.head == "seq_cls":
        common.update(auto_class="AutoModelForSequenceClassification", num_labels=1)
    peft = peft_node(cfg)
    quant = OmegaConf.to_container(peft.quantization, resolve=True) if peft is not None and peft.get("quantization") else None
    if quant:
        import torch
        from transformers import BitsAndBytesConfig

        if isinstance(quant.get("bnb_4bit_compute_dtype"), str):
            quant["bnb_4bit_compute_dtype"] = getattr(torch, quant["bnb_4bit_compute_dtype"])
        common["quantization_config"] = BitsAndBytesConfig(**quant)

    from train.models import load_causal_lm

    if previous is not None and peft is None:
        return load_causal_lm(str(previous), **common), None
    base = load_causal_lm(str(m.name_or_path), revision=m.get("revision"), **common)
    if peft is None:
        return base, None
    if previous is not None:            # keep training the previous method's adapter
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(previous), is_trainable=True), None
    from peft import LoraConfig

    lora = {k: v for k, v in OmegaConf.to_container(peft, resolve=True).items() if k != "quantization"}
    if spec.head == "seq_cls":
        lora["task_type"] = "SEQ_CLS"
    return base, LoraConfig(**lora)


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-N` (a SIGKILL mid-save leaves one without trainer_state)."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    done = [p for p in root.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def build_trainer(cfg: DictConfig, node: DictConfig, stage_dir: Path, snapshot: Snapshot,
                  previous: Path | None):
    """The TRL trainer of one method, data prepared (tokenized, labelled) but not trained."""
    from train.models import load_tokenizer

    spec = METHODS[node.name]
    train_ds = snapshot.dataset(spec.kind, "train", spec.columns)
    if train_ds is None:
        raise RuntimeError(f"snapshot {snapshot.version}: {spec.kind}/train.parquet has no rows; "
                           f"method {node.name} has nothing to train on")
    eval_ds = snapshot.dataset(spec.kind, "eval", spec.columns)
    # the TRL config sets up the distributed state first: ZeRO-3 init needs it before loading
    args = trl_args(cfg, node, stage_dir, snapshot, has_eval=eval_ds is not None)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(cfg.run_dir) / "tensorboard" / stage_dir.name)
    m = cfg.model
    tok = load_tokenizer(str(m.name_or_path), trust_remote_code=bool(m.get("trust_remote_code")),
                         chat_template=m.get("chat_template"), revision=m.get("revision"),
                         add_pad_token=bool(m.get("add_pad_token", False)))
    model, peft_config = load_model(cfg, node, tok, previous)
    return load_object(spec.trainer)(model=model, args=args, train_dataset=train_ds,
                                     eval_dataset=eval_ds, processing_class=tok,
                                     peft_config=peft_config)


def train_method(cfg: DictConfig, node: DictConfig, stage_dir: Path, out_dir: Path,
                 snapshot: Snapshot, previous: Path | None) -> dict:
    """Train one method to out_dir, resuming its newest checkpoint; return its metrics."""
    trainer = build_trainer(cfg, node, stage_dir, snapshot, previous)
    last = last_checkpoint(trainer.args.output_dir)
    if last and trainer.is_world_process_zero():
        print(f"train: resuming {node.name} from {last}", flush=True)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    metrics = {**result.metrics, "global_step": trainer.state.global_step,
               "num_input_tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
               "resumed_from": last, "train_wall_s": round(time.time() - start, 3),
               "train_examples": len(trainer.train_dataset)}
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(str(out_dir))     # gathers ZeRO-3 / FSDP shards; main process writes
    if trainer.is_world_process_zero():
        # DPO on an existing adapter trains against a frozen copy named "ref": not an output
        ref = out_dir / "ref"
        if ref.is_dir() and (out_dir / "adapter_config.json").exists():
            import shutil

            shutil.rmtree(ref)
        trainer.processing_class.save_pretrained(str(out_dir))
        trainer.state.save_to_json(str(stage_dir / "trainer_state.json"))
        base_cfg = getattr(trainer.model, "config", None)
        metrics["base_model_commit"] = getattr(base_cfg, "_commit_hash", None)
    trainer.accelerator.wait_for_everyone()
    return metrics


def frozen_snapshot(cfg: DictConfig) -> Snapshot:
    """The snapshot the parent froze into the run config: every rank reads the same files."""
    snap = (cfg.get("resolved") or {}).get("snapshot")
    if not snap:
        raise RuntimeError("the run config has no resolved snapshot: run with the build stage, "
                           "or pass snapshot=VERSION_OR_PATH")
    return open_snapshot(snap["path"])


def run_stages(cfg: DictConfig) -> None:
    """Every method of the run in order; finished ones (done.json) are skipped."""
    from accelerate import PartialState

    snapshot = frozen_snapshot(cfg)
    stages = stage_dirs(cfg)
    previous: Path | None = None
    for i, (node, stage_dir) in enumerate(stages):
        done = stage_dir / "done.json"
        out_dir = final_dir(cfg) if i == len(stages) - 1 else stage_dir / "output"
        if done.exists():
            previous = Path(json.loads(done.read_text())["output"])
            continue
        metrics = train_method(cfg, node, stage_dir, out_dir, snapshot, previous)
        state = PartialState()
        if state.is_main_process:
            write_json(done, {"method": str(node.name), "output": str(out_dir), "metrics": metrics})
        state.wait_for_everyone()
        previous = out_dir
