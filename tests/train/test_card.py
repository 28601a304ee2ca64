"""Model cards through huggingface_hub: metadata, model-index, gate figures before TRL's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from train.card import REWARD_ACCURACY_NOTE, write_card

DPO_METRICS = {"train_loss": 0.6412, "global_step": 40, "epoch": 1.0, "num_input_tokens_seen": 51200,
               "eval_loss": 0.4018, "eval_rewards/accuracies": 0.92, "eval_rewards/margins": 0.731,
               "eval_rewards/chosen": 0.12, "eval_rewards/rejected": -0.61, "train_runtime": 12.5,
               "resumed_from": None, "base_model_commit": None}


def manifest(base: str, *, peft: bool, methods=("sft", "dpo"), **extra) -> dict:
    stages = [{"method": m, "dir": f"{i}-{m}",
               "metrics": DPO_METRICS if m == "dpo" else {"train_loss": 1.93, "global_step": 20}}
              for i, m in enumerate(methods)]
    return {"run_id": "20261128-120000", "exp_name": "dpo_lora_smol", "method": methods[-1],
            "methods": list(methods), "snapshot_version": "2026-11-28.1", "snapshot_path": "/s",
            "base_model": base, "base_model_revision": None, "peft": peft,
            "artifacts": {"adapter": "adapter" if peft else None, "model": None if peft else "model"},
            "metrics": {k: v for k, v in stages[-1]["metrics"].items()
                        if k not in ("resumed_from", "base_model_commit")},
            "stages": stages, "git": {"commit": "abc123", "dirty": False}, "config": "config.yaml",
            **extra}


def evaluation(decision="reject") -> dict:
    def row(b, c, lo, hi, n=240, mde=0.05, **details):
        return {"name": "", "baseline": b, "candidate": c, "diff": c - b, "ci_low": lo, "ci_high": hi,
                "n": n, "mde": mde, "details": details}
    return {
        "decision": decision,
        "reasons": ["preference_accuracy: upper bound is below margin +0.0000 "
                    "(diff -0.0400, CI [-0.0700, -0.0100], n=240, MDE 0.0500)",
                    "guard sft_loglik: no regression beyond 0.5000 (diff +0.0300, CI [-0.0100, +0.0700], n=180)"],
        "checks": {"preference_accuracy": "fail", "sft_loglik": "pass"},
        "metrics": {"preference_margin": row(0.8, 0.3, -0.6, -0.4, unit="nats (sum)"),
                    "sft_loglik": row(-2.1, -2.07, -0.01, 0.07, n=180, unit="nats per token"),
                    "preference_accuracy": row(0.15, 0.11, -0.07, -0.01),
                    "kto_auc": row(0.5, float("nan"), float("nan"), float("nan"), n=0)},
        "eval_id": "ev-7f3a", "run_id": "20261128-120000", "baseline": "production@v3",
        "snapshot_version": "2026-11-28.1", "notes": [], "promoted": False,
        "primary": "preference_accuracy", "guards": {"sft_loglik": 0.5},
    }


@pytest.fixture
def smol_local(tmp_path) -> Path:
    base = tmp_path / "models" / "smollm2-135m"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama",
                                                  "_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    return base


def lora_run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "dpo_lora_smol" / "20261128-120000"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return run


def test_lora_on_a_local_base_with_a_hub_id(tmp_path, smol_local):
    run = lora_run(tmp_path)
    card = write_card(run, manifest(str(smol_local), peft=True))
    assert (run / "README.md").read_text() == (run / "adapter" / "README.md").read_text()
    assert not (run / "model").exists()
    data = ModelCard.load(run / "adapter" / "README.md").data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["library_name"] == "peft" and data["datasets"] == ["2026-11-28.1"]
    assert data["tags"] == ["trl", "sft", "dpo", "lora", "signal-posttrain"]
    assert "model-index" not in data and "license" not in data
    assert "AutoPeftModelForCausalLM" in card.text and str(smol_local) in card.text
    assert "Not evaluated by the promotion gate yet" in card.text
    assert "eval_rewards/accuracies | 0.92" in card.text and "### 1-dpo" in card.text


def test_source_json_of_an_offline_kit_gives_hub_id_and_license(tmp_path):
    base = tmp_path / "smol"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "SOURCE.json").write_text(json.dumps({"model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                                                  "license": "Apache-2.0"}))
    data = write_card(lora_run(tmp_path), manifest(str(base), peft=True)).data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and data["license"] == "apache-2.0"


def test_full_fine_tune_of_a_local_path_without_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "models" / "tiny"          # relative "models/tiny" looks like owner/name
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    card = write_card(run, manifest("models/tiny", peft=False, methods=("sft",)))
    data = ModelCard.load(run / "model" / "README.md").data.to_dict()
    assert "base_model" not in data and data["library_name"] == "transformers"
    assert "lora" not in data["tags"]
    assert "the local model `models/tiny` (no hub id known" in card.text
    assert "AutoModelForCausalLM" in card.text and "peft" not in card.text.split("## Promotion")[0]
    assert "model_name" not in data and REWARD_ACCURACY_NOTE not in card.text   # SFT only


def test_hub_base_model_and_explicit_hub_id(tmp_path):
    run = lora_run(tmp_path)
    data = write_card(run, manifest("Qwen/Qwen2.5-0.5B-Instruct", peft=True)).data.to_dict()
    assert data["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    data = write_card(run, manifest("/nowhere/x", peft=True, base_model_hub_id="org/x")).data.to_dict()
    assert data["base_model"] == "org/x"


def test_evaluation_gives_model_index_and_gate_first(tmp_path, smol_local):
    run = lora_run(tmp_path)
    m = manifest(str(smol_local), peft=True)
    first = write_card(run, m)
    card = write_card(run, m, evaluation())
    loaded = ModelCard.load(run / "README.md")
    assert loaded.content == card.content != first.content
    assert ModelCard.load(run / "adapter" / "README.md").content == card.content
    data = loaded.data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["datasets"] == ["2026-11-28.1"]
    [index] = data["model-index"]
    assert index["name"] == "dpo_lora_smol/20261128-120000"
    [result] = index["results"]
    assert result["task"]["type"] == "text-generation"
    assert result["dataset"] == {"name": "2026-11-28.1", "type": "2026-11-28.1", "split": "eval"}
    values = {x["type"]: x["value"] for x in result["metrics"]}
    assert values == {"preference_accuracy": 0.11, "sft_loglik": -2.07, "preference_margin": 0.3}
    assert [x["type"] for x in result["metrics"]][:2] == ["preference_accuracy", "sft_loglik"]
    results = loaded.data.eval_results
    assert {r.metric_type: r.metric_value for r in results}["preference_accuracy"] == 0.11

    text = loaded.text
    assert "Not evaluated" not in text
    gate, trl = text.index("**Decision: reject**"), text.index("## Training-time metrics")
    assert gate < text.index("**preference_accuracy** (primary)") < text.index("sft_loglik (guard") < trl
    assert text.index("upper bound is below margin") < trl < text.index("eval_rewards/accuracies | 0.92")
    assert REWARD_ACCURACY_NOTE in text
    row = next(line for line in text.splitlines() if "**preference_accuracy** (primary)" in line)
    assert "| 0.1500 | 0.1100 | -0.0400 | [-0.0700, -0.0100] | 240 |" in row
    assert "| kto_auc | 0.5000 | n/a | n/a | [n/a, n/a] | 0 |" in text


def test_values_that_would_break_yaml_are_quoted(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    m = manifest("/nowhere/x", peft=False, methods=("sft",))
    m["snapshot_version"] = "v: 1 # [odd]"
    m["exp_name"] = "a: b"
    ev = evaluation("promote")
    ev["snapshot_version"] = "v: 1 # [odd]"
    card = write_card(run, m, ev)
    data = ModelCard.load(run / "README.md").data.to_dict()
    assert data["datasets"] == ["v: 1 # [odd]"] and card.data.model_name == "a: b/20261128-120000"
    assert data["model-index"][0]["results"][0]["dataset"]["name"] == "v: 1 # [odd]"
    m["snapshot_version"] = ev["snapshot_version"] = "2026-11-28"     # a YAML date unless quoted
    write_card(run, m, ev)
    data = ModelCard.load(run / "README.md").data.to_dict()
    assert data["datasets"] == ["2026-11-28"]
    assert data["model-index"][0]["results"][0]["dataset"]["type"] == "2026-11-28"
    assert "The gate moved `production` to this run." not in ModelCard.load(run / "README.md").text
