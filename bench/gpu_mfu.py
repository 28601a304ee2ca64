"""GPU check: full bf16 SFT of a ~0.5B Llama built from config, tokens/s and MFU.

One self-contained script (no hub, no repo imports) so it runs on a bare GPU box:

    python bench/gpu_mfu.py                      # ~0.47B Llama, packing + SDPA, 30 steps
    python bench/gpu_mfu.py --compile            # same with torch.compile
    python bench/gpu_mfu.py --liger              # Liger fused kernels (pip install liger-kernel)
    python bench/gpu_mfu.py --cpu-dry-run        # tiny size on CPU: checks the wiring only

MFU = 6 x params x tokens/s / peak dense bf16 FLOP/s of the card (H100/H200 SXM:
989 TFLOP/s). Attention FLOPs are left out of the numerator, as in the usual
6ND estimate, so the figure is conservative. Steps before `--warmup` are not timed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def peak_flops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def tokenizer(vocab: int):
    """A word-level tokenizer with pad/eos; the data is pre-tokenized ids anyway."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = {f"t{i}": i for i in range(vocab - 2)}
    words.update({"<pad>": vocab - 2, "</s>": vocab - 1})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="t0"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>")


def data(n: int, vocab: int, max_len: int, seed: int):
    """Pre-tokenized documents with a realistic (log-normal) spread of lengths."""
    import datasets

    g = torch.Generator().manual_seed(seed)
    lengths = torch.exp(torch.randn(n, generator=g) * 0.8 + math.log(max_len / 4)).clamp(32, max_len).long()
    rows = [torch.randint(0, vocab - 2, (int(L),), generator=g).tolist() for L in lengths]
    return datasets.Dataset.from_dict({"input_ids": rows})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--seq", type=int, default=4096, help="packed sequence length")
    p.add_argument("--batch", type=int, default=8, help="packed sequences per step")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--liger", action="store_true", help="Liger fused kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy)")
    p.add_argument("--attn", default=None, help="attention implementation (default: flash_attention_2 if importable, else sdpa)")
    p.add_argument("--cpu-dry-run", action="store_true")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args()

    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    cpu = args.cpu_dry_run
    if cpu:
        size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                    intermediate_size=128, vocab_size=1000)
        args.seq, args.batch, args.steps, args.warmup = 256, 2, 4, 1
    else:
        size = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
                    intermediate_size=4096, vocab_size=32000)
    attn = args.attn
    if attn is None:
        try:
            import flash_attn  # noqa: F401
            attn = "flash_attention_2"
        except ImportError:
            attn = "sdpa"
    config = LlamaConfig(max_position_embeddings=max(args.seq, 4096), tie_word_embeddings=False,
                         attn_implementation=attn, **size)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32 if cpu else torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    device = "cpu" if cpu else torch.cuda.get_device_name(0)
    print(f"device: {device}  params: {n_params / 1e6:.1f}M  attn: {attn}  compile: {args.compile}", flush=True)
    packing = "bfd padding-free" if attn.startswith("flash") else "wrapped"

    docs_needed = args.steps * args.batch * args.seq // (args.seq // 4) * 2
    ds = data(docs_needed, config.vocab_size, args.seq, seed=0)

    marks: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            if not cpu:
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), state.num_input_tokens_seen))

    cfg = SFTConfig(
        output_dir="/tmp/gpu_mfu", max_steps=args.steps, per_device_train_batch_size=args.batch,
        learning_rate=1e-4, lr_scheduler_type="constant", warmup_steps=0,
        # Padding-free (bfd) packing needs varlen flash attention; under SDPA it would flatten the
        # batch into one row with a block-diagonal mask and lose the flash kernel, so SDPA packs
        # "wrapped" rows (documents concatenated, causal mask, the flash SDPA backend).
        max_length=args.seq, packing=True, packing_strategy="bfd" if attn.startswith("flash") else "wrapped",
        padding_free=attn.startswith("flash"), bf16=not cpu, use_cpu=cpu,
        gradient_checkpointing=False, torch_compile=args.compile,
        optim="adamw_torch" if cpu else "adamw_torch_fused", use_liger_kernel=args.liger,
        logging_steps=5, save_strategy="no", report_to=[], dataloader_num_workers=2,
        include_num_input_tokens_seen="non_padding", seed=0,
    )
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tokenizer(config.vocab_size),
                         callbacks=[Clock()])
    trainer.train()

    (t0, n0), (t1, n1) = marks[args.warmup - 1], marks[-1]
    tps = (n1 - n0) / (t1 - t0)
    peak = None if cpu else peak_flops(device)
    mfu = 6 * n_params * tps / peak if peak else None
    result = {"device": device, "params": n_params, "attn": attn, "compile": args.compile, "liger": args.liger, "packing": packing,
              "seq": args.seq, "batch": args.batch, "timed_steps": len(marks) - args.warmup,
              "tokens_per_s": round(tps, 1), "mfu": None if mfu is None else round(mfu, 4),
              "peak_bf16_flops": peak, "max_mem_gib": None if cpu else round(torch.cuda.max_memory_allocated() / 2**30, 1)}
    print("RESULT " + json.dumps(result), flush=True)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
