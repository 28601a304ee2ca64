"""Padding without growing the vocabulary (issue 15, item 5: adapters that engines can serve).

A tokenizer with no pad token (or pad == eos) pads with a token it already has, so a
LoRA adapter holds LoRA weights only (no embed_tokens / lm_head, no modules_to_save)
and the final eos of every completion stays a trained label for every method.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from train.__main__ import main
from train.models import CHATML_TEMPLATE, build_tiny_model, default_corpus, load_tokenizer

METHODS = ["sft", "dpo", "kto", "orpo", "reward"]


def tokenizer_without_pad(specials: list[str]):
    """A byte-level BPE like train.models.build_tokenizer's, with no pad token at all."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(default_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", unk_token=None,
                                   additional_special_tokens=[s for s in specials if s != "<|im_end|>"])
    fast.chat_template = CHATML_TEMPLATE
    fast.model_max_length = 2048
    assert fast.pad_token is None
    return fast


@pytest.fixture(scope="module")
def eos_only_dir(tmp_path_factory) -> Path:
    """Tiny model whose tokenizer has no pad and no spare special token: padding falls back to eos."""
    out = tmp_path_factory.mktemp("models") / "eos-only"
    build_tiny_model(tokenizer_without_pad(["<|im_start|>", "<|im_end|>"]), out)
    return out


@pytest.fixture(scope="module")
def smol_like_dir(tmp_path_factory) -> Path:
    """Tiny model whose tokenizer has no pad but an unused <|endoftext|> (like SmolLM2's)."""
    out = tmp_path_factory.mktemp("models") / "smol-like"
    build_tiny_model(tokenizer_without_pad(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), out)
    return out


# ----------------------------------------------------------------------------- choosing the pad


def test_missing_pad_reuses_an_existing_token_and_keeps_the_vocabulary(smol_like_dir, eos_only_dir):
    from transformers import AutoTokenizer

    tok = load_tokenizer(str(smol_like_dir))
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id
    assert len(tok) == len(AutoTokenizer.from_pretrained(smol_like_dir)) == 512

    tok = load_tokenizer(str(eos_only_dir))
    assert tok.pad_token_id == tok.eos_token_id and len(tok) == 512

    # what load_tokenizer chose survives a save/load (the adapter folder carries the tokenizer)
    tok = load_tokenizer(str(smol_like_dir))
    tok.save_pretrained(smol_like_dir.parent / "saved")
    again = load_tokenizer(str(smol_like_dir.parent / "saved"))
    assert again.pad_token == "<|endoftext|>" and len(again) == 512


def test_add_pad_token_restores_the_old_resize_and_says_so(smol_like_dir, capsys):
    from train.models import load_causal_lm

    tok = load_tokenizer(str(smol_like_dir), add_pad_token=True)
    assert tok.pad_token == "<|pad|>" and len(tok) == 513
    assert "add_pad_token" in capsys.readouterr().out
    model = load_causal_lm(str(smol_like_dir), tokenizer=tok)
    assert model.get_input_embeddings().weight.shape[0] == 513
    assert "resizing token embeddings 512 -> 513" in capsys.readouterr().out


def test_resize_for_leaves_a_covering_vocabulary_alone(smol_like_dir, capsys):
    from train.models import load_causal_lm

    tok = load_tokenizer(str(smol_like_dir))
    model = load_causal_lm(str(smol_like_dir), tokenizer=tok)
    assert model.get_input_embeddings().weight.shape[0] == 512
    assert model.config.pad_token_id == tok.pad_token_id
    assert "resizing" not in capsys.readouterr().out


def test_smollm2_pads_with_endoftext(smollm2_dir):
    """The real base model ships pad == eos (<|im_end|>); it now pads with its own <|endoftext|>."""
    tok = load_tokenizer(str(smollm2_dir))
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id
    assert len(tok) == json.loads((smollm2_dir / "config.json").read_text())["vocab_size"]


def test_model_add_pad_token_is_a_checked_model_key(run_overrides):
    from scripts.config import compose
    from signals.config import ConfigError
    from train.config import validate

    cfg = compose(["+exp=sft_lora_tiny", *run_overrides])
    assert cfg.model.add_pad_token is False
    validate(cfg)
    with pytest.raises(ConfigError, match="model.add_pad_token"):
        validate(compose(["+exp=sft_lora_tiny", *run_overrides, "model.add_pad_token=maybe"]))


# ----------------------------------------------------------------------------- eos labels, pad == eos


def _trained_eos_positions(method: str, batch: dict, eos: int) -> list[tuple[int, bool]]:
    """(row, is the row's final eos trained) for every row of a collated batch."""
    groups = {"orpo": [("chosen_", "chosen_labels"), ("rejected_", "rejected_labels")]}.get(
        method, [("", "labels" if method == "sft" else "completion_mask")])
    if method == "kto":
        groups.append(("KL_", "KL_completion_mask"))
    out = []
    for prefix, key in groups:
        ids, attn = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
        for row in range(ids.shape[0]):
            real = attn[row].nonzero().flatten()
            last = int(real.max())
            eos_at = [int(i) for i in real if ids[row, i] == eos]
            pos = max(eos_at)
            assert pos >= last - 1, "the completion does not end in eos (plus the template's newline)"
            trained = batch[key][row, pos]
            out.append((row, bool(trained == eos) if method in ("sft", "orpo") else bool(trained == 1)))
    return out


@pytest.mark.parametrize("method", METHODS)
def test_final_eos_stays_trained_when_pad_is_eos(method, eos_only_dir, snapshot_dir, tmp_path):
    """TRL 1.16 masks labels by position: padding with eos keeps every final eos label."""
    from scripts.config import compose
    from signals.snapshot import open as open_snapshot
    from train.rundir import fix_run_dir
    from train.runner import build_trainer

    cfg, _ = fix_run_dir(compose(["+exp=sft_lora_tiny", f"model.name_or_path={eos_only_dir}",
                                  f"snapshot={snapshot_dir}", f"output_root={tmp_path / 'runs'}",
                                  f"method={method}", "method.args.max_length=128"]))
    trainer = build_trainer(cfg, cfg.method, tmp_path / "stage", open_snapshot(str(snapshot_dir)), None)
    tok = trainer.processing_class
    assert tok.pad_token_id == tok.eos_token_id and len(tok) == 512
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    ids_key = "chosen_input_ids" if method == "orpo" else "input_ids"
    attn_key = "chosen_attention_mask" if method == "orpo" else "attention_mask"
    padded = batch[attn_key] == 0
    assert padded.any(), "no row is padded: the check would prove nothing"
    assert (batch[ids_key][padded] == tok.eos_token_id).all()      # pads really are eos ids

    if method == "reward":
        # no labels: the score must be read at the last real token, not before a trailing eos
        model = trainer.model
        with torch.no_grad():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=True)
        last = batch["attention_mask"].sum(-1) - 1
        hidden = out.hidden_states[-1][torch.arange(len(last)), last]
        torch.testing.assert_close(out.logits, model.score(hidden))
        return
    rows = _trained_eos_positions(method, batch, tok.eos_token_id)
    assert rows and all(ok for _, ok in rows), f"final eos masked out of the loss: {rows}"


# ----------------------------------------------------------------------------- the adapter


def test_lora_adapter_has_no_embeddings_and_loads_back(smol_like_dir, snapshot_dir, tmp_path):
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    rc = main(["+exp=sft_lora_tiny", f"model.name_or_path={smol_like_dir}", f"snapshot={snapshot_dir}",
               f"output_root={tmp_path / 'runs'}", "stages=[build,train]",
               "tracking.report_to=[tensorboard]", "method.args.max_steps=1"])
    assert rc == 0
    (run,) = [p for p in (tmp_path / "runs" / "sft_lora_tiny").iterdir() if p.is_dir()]
    adapter = run / "adapter"
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys), keys
    assert not [k for k in keys if "embed_tokens" in k or "lm_head" in k]
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert not config.get("modules_to_save")
    saved = load_tokenizer(str(adapter))
    assert saved.pad_token == "<|endoftext|>" and len(saved) == 512

    base = AutoModelForCausalLM.from_pretrained(smol_like_dir)
    tuned = PeftModel.from_pretrained(base, str(adapter))
    assert tuned.get_input_embeddings().weight.shape[0] == 512
    enc = saved.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                                    return_tensors="pt", return_dict=True)
    assert torch.isfinite(tuned(**enc).logits).all()
