"""The offline model kit: tiny tokenizer + model, and the real SmolLM2 checkpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


def test_tiny_loads_with_auto_classes(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama"
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.chat_template
    ids = tok.apply_chat_template([{"role": "user", "content": "hello"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model(**ids)
    assert out.logits.shape[-1] >= len(tok)


def test_tiny_chat_template_ends_assistant_turn_with_eos_once(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
        return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert tok.bos_token_id is None or ids.count(tok.bos_token_id) <= 1
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    assert trained[-1] == tok.eos_token_id          # the final eos is a trained label
    assert trained.count(tok.eos_token_id) == 1


def test_tiny_is_deterministic_under_seed(tmp_path):
    from train.models import build_tiny

    a = build_tiny(tmp_path / "a", seed=3)
    b = build_tiny(tmp_path / "b", seed=3)
    c = build_tiny(tmp_path / "c", seed=4)
    read = lambda p: (p / "model.safetensors").read_bytes()  # noqa: E731
    assert read(a) == read(b)
    assert read(a) != read(c)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_tiny_cli(tmp_path):
    out = tmp_path / "cli-tiny"
    subprocess.run([sys.executable, "-m", "train", "tiny", "--out", str(out),
                    "--hidden-size", "32"], cwd=ROOT, check=True, capture_output=True)
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()


def test_load_helpers_fix_pad_and_template_without_growing_the_vocabulary(tmp_path, tiny_model_dir):
    """A tokenizer with pad == eos and without template gets fixed or a clear error; the pad is a
    token it already has (here <|pad|>), so the embeddings keep their size (tests/train/test_padding.py)."""
    from transformers import AutoTokenizer

    from train.models import CHATML_TEMPLATE, load_causal_lm, load_tokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = tok.eos_token
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "bare")
    (tmp_path / "bare" / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no chat template"):
        load_tokenizer(str(tmp_path / "bare"))
    fixed = load_tokenizer(str(tmp_path / "bare"), chat_template=CHATML_TEMPLATE)
    assert fixed.pad_token_id != fixed.eos_token_id
    assert len(fixed) == len(tok)
    model = load_causal_lm(str(tiny_model_dir), tokenizer=fixed)
    assert model.get_input_embeddings().weight.shape[0] == len(fixed) == len(tok)
    assert model.config.pad_token_id == fixed.pad_token_id


def test_smollm2_fetch_is_idempotent_and_trainable(smollm2_dir):
    """One LoRA training step on the real checkpoint (no GGUF quantization_config left)."""
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train.models import fetch

    before = (smollm2_dir / "model.safetensors").stat().st_mtime
    assert fetch("smollm2-135m", smollm2_dir) == smollm2_dir
    assert (smollm2_dir / "model.safetensors").stat().st_mtime == before
    assert "quantization_config" not in json.loads((smollm2_dir / "config.json").read_text())

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    batch = tok.apply_chat_template([{"role": "user", "content": "Say hi."},
                                     {"role": "assistant", "content": "Hi!"}],
                                    return_tensors="pt", return_dict=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainable, strict=True))


@pytest.mark.slow
def test_smollm2_answers_a_chat_prompt(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=20, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
