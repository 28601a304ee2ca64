"""What the engine serves: a LoRA run as trained (no resized vocabulary), and the real SmolLM2-135M."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors import safe_open

from tests.serve.conftest import write_pointer


def lora_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter as training saves it (train.models tokenizer: no pad token added)."""
    from peft import LoraConfig, get_peft_model

    from train.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(base))
    model = get_peft_model(load_causal_lm(str(base), tokenizer=tok),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def test_a_lora_run_is_served_by_the_engine_as_an_adapter(gateway_factory, tiny_model_dir, tmp_path):
    adapter = lora_adapter(tiny_model_dir, tmp_path / "adapter")
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert names and all("lora_" in n for n in names), [n for n in names if "lora_" not in n]
    gw = gateway_factory(start=False)
    write_pointer(gw.pointers, "production", "lora-run", adapter, peft=True, base_model=str(tiny_model_dir))
    gw.start()
    r = gw.chat(user="u1")
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "lora-run" and r.json()["usage"]["completion_tokens"] >= 1


@pytest.mark.slow
def test_smollm2_answers_through_the_gateway(gateway_factory, smollm2_dir):
    gw = gateway_factory(start=False)
    write_pointer(gw.pointers, "production", "smollm2", smollm2_dir)
    gw.start()
    r = gw.chat(user="u1", messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=12, temperature=0)
    assert r.status_code == 200, r.text
    text = r.json()["choices"][0]["message"]["content"]
    assert "Paris" in text, text
    gw.stop()
    (rec,) = gw.records()
    assert rec["completion"] == text and rec["model_id"] == "smollm2"
