"""GPU throughput and MFU of a full bf16 SFT with TRL: one self-contained script.

    python bench/gpu_mfu.py                      # ~0.5B Qwen2-architecture model, 30 steps, on CUDA
    python bench/gpu_mfu.py --cpu-dry-run        # tiny size on CPU: checks that it starts and runs

Builds a model from config (no hub: the shape of Qwen2.5-0.5B, ~494M parameters,
tied embeddings), makes synthetic token data (lengths spread over 64..max_length),
and runs `trl.SFTTrainer` with bf16, padding-free best-fit packing, no activation
checkpointing, and flash-attention 2 when `flash_attn` imports (else SDPA).
Timing skips the first `--warmup` steps and synchronizes CUDA at each step end.

Prints tokens/s (non-padding tokens) and MFU = 6 x params x tokens/s / peak, with
peak = the card's dense bf16 TFLOPS (H100 SXM / H200: 989; H100 PCIe: 756;
A100: 312; `--peak-tflops` for others). 6N counts every parameter (the LM head is
real compute) and leaves attention score FLOPs out; a second MFU with them is
printed for reference. On CUDA out-of-memory the batch is halved and the run retried.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback

PEAKS_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0),
                ("A100", 312.0), ("L40S", 362.0), ("A10G", 125.0), ("L4", 121.0)]


def log(msg: str) -> None:
    print(msg, flush=True)


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAKS_TFLOPS:
        if key in name:
            return value
    return None


def model_config(dry: bool):
    from transformers import Qwen2Config

    if dry:
        return Qwen2Config(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                           tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    # Qwen2.5-0.5B's shape
    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       pad_token_id=151643, eos_token_id=151645, bos_token_id=None)


def tokenizer_for(config):
    """A minimal fast tokenizer: the data is already token ids; TRL needs pad/eos ids."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    special = {config.pad_token_id: "<pad>", config.eos_token_id: "<eos>"}
    vocab = {special.get(i, f"t{i}"): i for i in range(config.vocab_size)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t2")),
                                  pad_token="<pad>", eos_token="<eos>", unk_token="t2")
    return tok


def synthetic_dataset(n: int, max_length: int, vocab: int, eos: int, seed: int = 0):
    """Pre-tokenized rows, lengths log-uniform over 64..max_length (a realistic spread)."""
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    lo = math.log(min(64, max_length // 2))
    for _ in range(n):
        length = int(math.exp(rng.uniform(lo, math.log(max_length))))
        ids = [rng.randrange(3, min(vocab, 150000)) for _ in range(length - 1)] + [eos]
        rows.append({"input_ids": ids})
    return Dataset.from_list(rows)


def attention_impl(requested: str, cuda: bool) -> str:
    if requested != "auto":
        return requested
    if cuda and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def run(args, batch: int, attn: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available() and not args.cpu_dry_run
    config = model_config(args.cpu_dry_run)
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    n_params = sum(p.numel() for p in model.parameters())
    tok = tokenizer_for(config)
    max_length = 256 if args.cpu_dry_run else args.max_length
    steps = 4 if args.cpu_dry_run else args.steps
    warmup = 1 if args.cpu_dry_run else args.warmup
    # enough rows for `steps` packed batches: mean row ~ max_length / 2.7 (log-uniform)
    n_rows = int(steps * batch * 3.2) + 64
    data = synthetic_dataset(n_rows, max_length, config.vocab_size, config.eos_token_id)

    marks: list[tuple[int, float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            marks.append((state.global_step, time.perf_counter(), int(state.num_input_tokens_seen)))

    out = tempfile.mkdtemp(prefix="gpu-mfu-")
    sft = SFTConfig(
        output_dir=out, max_steps=steps, per_device_train_batch_size=batch,
        gradient_accumulation_steps=1, learning_rate=1e-5, lr_scheduler_type="constant",
        warmup_steps=0, max_length=max_length, packing=True, bf16=cuda, use_cpu=not cuda,
        activation_checkpointing=False, logging_steps=10, save_strategy="no", report_to="none",
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=2 if cuda else 0,
        dataloader_pin_memory=cuda, seed=0, disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=sft, train_dataset=data, processing_class=tok,
                         callbacks=[Clock()])
    log(f"training: {steps} steps, batch {batch} x {max_length} packed tokens, attention {attn}, "
        f"dtype {dtype}, {n_params / 1e6:.1f}M parameters, {len(trainer.train_dataset)} packed rows")
    trainer.train()
    timed = [m for m in marks if m[0] > warmup]
    if len(timed) < 2:
        raise RuntimeError(f"too few steps after warmup: {marks}")
    (s0, t0, k0), (s1, t1, k1) = timed[0], timed[-1]
    tokens_per_s = (k1 - k0) / (t1 - t0)
    layers, hidden = config.num_hidden_layers, config.hidden_size
    # attention scores + weighted sum: 2 matmuls x 2 FLOPs x seq x hidden per token per layer, x3 for fwd+bwd;
    # packed rows hold documents of ~max_length/2.7 tokens on average (causal halves it again)
    mean_doc = max_length / 2.7
    attn_flops_per_token = 3 * 2 * 2 * layers * hidden * mean_doc / 2
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return {"params": n_params, "tokens_per_s": tokens_per_s, "timed_steps": s1 - s0,
            "tokens_per_step": (k1 - k0) / (s1 - s0), "attn_flops_per_token": attn_flops_per_token,
            "batch": batch, "max_length": max_length, "attention": attn, "peak_mem_gib": peak_mem}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-dry-run", action="store_true", help="tiny model on CPU, 4 steps: a start-up check")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    p.add_argument("--batch", type=int, default=8, help="packed rows per step (halved on OOM)")
    p.add_argument("--max-length", type=int, default=4096, help="tokens per packed row")
    p.add_argument("--attn", default="auto", choices=["auto", "flash_attention_2", "sdpa", "eager"])
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this card")
    args = p.parse_args()

    import torch
    import transformers
    import trl

    cuda = torch.cuda.is_available() and not args.cpu_dry_run
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})"
    log(f"device: {device}; torch {torch.__version__} (CUDA {torch.version.cuda}), transformers "
        f"{transformers.__version__}, trl {trl.__version__}, flash_attn "
        f"{'yes' if importlib.util.find_spec('flash_attn') else 'no'}, python {sys.version.split()[0]}")
    if not cuda and not args.cpu_dry_run:
        log("no CUDA device: run with --cpu-dry-run on CPU")
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    attn = attention_impl(args.attn, cuda)
    batch = 2 if args.cpu_dry_run else args.batch
    result = None
    while result is None:
        try:
            result = run(args, batch, attn)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch == 1:
                raise
            batch //= 2
            log(f"CUDA out of memory: retrying with batch {batch}")
        except (ImportError, ValueError) as e:
            if attn == "flash_attention_2":
                log(f"flash-attention failed ({e}); retrying with sdpa")
                traceback.print_exc()
                attn = "sdpa"
            else:
                raise
    peak = peak_tflops(device, args.peak_tflops) if cuda else None
    six_n = 6 * result["params"] * result["tokens_per_s"]
    with_attn = (6 * result["params"] + result["attn_flops_per_token"]) * result["tokens_per_s"]
    result.update(device=device, model_tflops=six_n / 1e12, peak_tflops=peak,
                  mfu=six_n / (peak * 1e12) if peak else None,
                  mfu_with_attention=with_attn / (peak * 1e12) if peak else None)
    log(f"tokens/s: {result['tokens_per_s']:.0f} over {result['timed_steps']} steps "
        f"({result['tokens_per_step']:.0f} tokens/step), model FLOPs 6N: {six_n / 1e12:.1f} TFLOP/s")
    if peak:
        log(f"MFU (6 x params x tokens/s / {peak:.0f} TFLOPS): {100 * result['mfu']:.1f}%   "
            f"(with attention FLOPs: {100 * result['mfu_with_attention']:.1f}%)   target >= 40%")
    else:
        log("MFU: n/a (" + ("CPU dry run" if not cuda else f"unknown peak for {device!r}; pass --peak-tflops") + ")")
    log("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
