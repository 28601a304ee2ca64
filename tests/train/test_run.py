"""`python -m train` end to end on CPU: outputs, methods, EOS labels, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from train.__main__ import main


def only_run(root: Path, exp: str) -> Path:
    runs = [p for p in (root / exp).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def losses(stage_dir: Path) -> dict[int, float]:
    state = json.loads((stage_dir / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def test_smoke_sft_then_dpo_writes_the_run_contract(run_overrides, tmp_path, tiny_model_dir):
    assert main(["+exp=smoke", *run_overrides]) == 0
    run = only_run(tmp_path / "runs", "smoke")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["methods"] == ["sft", "dpo"] and manifest["method"] == "dpo"
    assert manifest["snapshot_version"] == "fixture-0001"
    assert manifest["base_model"] == str(tiny_model_dir)
    assert manifest["artifacts"] == {"adapter": None, "model": "model"} and manifest["peft"] is False
    assert manifest["metrics"]["global_step"] == 4 and manifest["tokens_seen"] > 0
    assert set(manifest["git"]) == {"commit", "dirty"} and manifest["packages"]["trl"]
    frozen = yaml.safe_load((run / "config.yaml").read_text())
    assert frozen["run_id"] == run.name and frozen["resolved"]["snapshot"]["version"] == "fixture-0001"
    assert list((run / "tensorboard" / "0-sft").glob("events.out.tfevents.*"))
    assert (run / "model" / "README.md").exists() and (run / "model" / "chat_template.jinja").exists()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tuned = AutoModelForCausalLM.from_pretrained(run / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert tok.pad_token_id != tok.eos_token_id
    assert tuned.generation_config.eos_token_id == tok.eos_token_id
    moved = [n for n, p in tuned.named_parameters()
             if not torch.equal(p, dict(base.named_parameters())[n])]
    assert moved, "no parameter changed"


@pytest.mark.parametrize("method", ["kto", "orpo", "reward"])
def test_other_methods_train_a_lora_adapter(method, run_overrides, tmp_path):
    from peft import PeftConfig

    rc = main(["+exp=sft_lora_tiny", *run_overrides, f"method={method}", "method.args.max_steps=2",
               "method.args.max_length=128", "method.args.per_device_train_batch_size=4",
               "method.args.save_steps=2", "method.args.logging_steps=1"])
    assert rc == 0
    run = only_run(tmp_path / "runs", "sft_lora_tiny")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["method"] == method and manifest["metrics"]["global_step"] == 2
    cfg = PeftConfig.from_pretrained(run / "adapter")
    assert cfg.task_type == ("SEQ_CLS" if method == "reward" else "CAUSAL_LM")


def test_lora_save_merged_writes_a_servable_model(run_overrides, tmp_path):
    rc = main(["+exp=sft_lora_tiny", *run_overrides, "save_merged=true", "method.args.max_steps=2"])
    assert rc == 0
    run = only_run(tmp_path / "runs", "sft_lora_tiny")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["artifacts"] == {"adapter": "adapter", "model": "model"}
    names = {p.name for p in (run / "model").iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "chat_template.jinja", "README.md"} <= names
    assert not any(n.startswith("adapter") for n in names)


def test_final_eos_is_a_trained_label_and_nothing_is_doubled(run_overrides, tmp_path):
    """The "model never stops" bug: the eos closing the answer must be in the labels."""
    from scripts import stages
    from scripts.config import compose
    from train.rundir import fix_run_dir
    from train.runner import build_trainer

    cfg, _ = fix_run_dir(compose(["+exp=smoke", *run_overrides]))
    ctx = stages.run(stages.Context(cfg), ["ingest", "build"])
    trainer = build_trainer(cfg, cfg.method, tmp_path / "stage", ctx.snapshot, None)
    tok = trainer.processing_class
    assert tok.pad_token_id != tok.eos_token_id
    examples = [trainer.train_dataset[i] for i in range(8)]
    batch = trainer.data_collator(examples)           # what the loss actually sees
    for row, ex in enumerate(examples):
        ids = ex["input_ids"]
        last_eos = max(i for i, t in enumerate(ids) if t == tok.eos_token_id)
        assert ids[last_eos - 1] != tok.eos_token_id and last_eos >= len(ids) - 2
        pos = last_eos if tok.padding_side == "right" else batch["input_ids"].shape[1] - len(ids) + last_eos
        assert batch["input_ids"][row, pos] == tok.eos_token_id
        assert batch["labels"][row, pos] == tok.eos_token_id, "the final eos is masked out of the loss"
        assert all(not (a == b == tok.eos_token_id) for a, b in zip(ids, ids[1:], strict=False))
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) <= 1
        assert tok.pad_token_id not in ids


def test_same_seed_same_loss(run_overrides, tmp_path):
    args = ["+exp=sft_lora_tiny", *run_overrides, "method.args.max_steps=4", "resume=false"]
    assert main(args) == 0 and main(args) == 0
    runs = sorted((tmp_path / "runs" / "sft_lora_tiny").iterdir())
    assert len(runs) == 2
    a, b = (losses(r / "stages" / "0-sft") for r in runs)
    assert a.keys() == {1, 2, 3, 4}
    assert a == b
    assert main([*args, "seed=7"]) == 0
    c = losses(sorted((tmp_path / "runs" / "sft_lora_tiny").iterdir())[-1] / "stages" / "0-sft")
    assert c != a
