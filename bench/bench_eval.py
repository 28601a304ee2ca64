"""Batched, padding-aware preference scorer vs a per-example loop, in one run.

    .venv/bin/python bench/bench_eval.py                       # tiny model built on the fly
    .venv/bin/python bench/bench_eval.py --model models/smollm2-135m --pairs 128
    python bench/bench_eval.py --device cuda --hidden-size 576 --layers 30 --heads 9 --intermediate 1536
                                        # a random model of SmolLM2-135M's shape (tiny vocabulary)

Scores the same preference pairs (chosen and rejected under one prompt each) both
ways on the same model and prints wall time, the speed ratio and the largest
margin difference. Target (issue 6): >= 5x faster, margins equal within 1e-4.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the a user model answer question reply thanks hello please help order refund ship code "
         "function return value error fix table query select from where data customer support").split()


def pairs(n: int, seed: int = 0):
    """n preference pairs with prompts and answers of varied length (padding matters)."""
    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    out = []
    for _ in range(n):
        prompt = [{"role": "user", "content": text(4, 60) + "?"}]
        out.append((prompt, [{"role": "assistant", "content": text(3, 40) + "."}],
                    [{"role": "assistant", "content": text(3, 40) + "."}]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: a tiny Llama built in a temp dir)")
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--hidden-size", type=int, default=64, help="shape of the model built when --model is not given")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each path, interleaved; best is kept")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = ap.parse_args()

    import numpy as np
    import torch

    from eval.scoring import encode, score_encoded, score_loop
    from train.models import build_tiny, load_causal_lm, load_tokenizer

    if a.threads:
        torch.set_num_threads(a.threads)
    path = a.model or str(build_tiny(Path(tempfile.mkdtemp()) / "tiny", seed=0, hidden_size=a.hidden_size,
                                     num_layers=a.layers, num_heads=a.heads,
                                     intermediate_size=a.intermediate))
    tok = load_tokenizer(path)
    model = load_causal_lm(path, tokenizer=tok).to(a.device).eval()
    data = pairs(a.pairs)
    prompts = [p for p, _, _ in data]
    enc = encode(tok, prompts + prompts, [c for _, c, _ in data] + [r for _, _, r in data], 1024)
    n = len(data)
    lengths = [len(p) + len(c) for p, c in enc]
    print(f"model {path} ({sum(x.numel() for x in model.parameters()) / 1e6:.2f}M params) on {a.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{n} pairs = {2 * n} sequences, {min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.0f})")

    score_encoded(model, enc[:8], tok.pad_token_id, batch_size=8)      # warm-up both paths
    score_loop(model, enc[:8])

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        if a.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, out

    t_batched = t_loop = float("inf")
    for _ in range(a.repeat):            # interleaved, best of N: a shared machine's noise hits both
        tb, (lp_b, _) = timed(lambda: score_encoded(model, enc, tok.pad_token_id, batch_size=a.batch_size))
        tl, (lp_l, _) = timed(lambda: score_loop(model, enc))
        t_batched, t_loop = min(t_batched, tb), min(t_loop, tl)

    m_b, m_l = lp_b[:n] - lp_b[n:], lp_l[:n] - lp_l[n:]
    diff = float(np.abs(m_b - m_l).max())
    ratio = t_loop / t_batched
    print(f"best of {a.repeat} runs each")
    print(f"per-example loop : {t_loop:8.3f} s  ({2 * n / t_loop:8.1f} seq/s)")
    print(f"batched (bs={a.batch_size:<3d}): {t_batched:8.3f} s  ({2 * n / t_batched:8.1f} seq/s)")
    print(f"speedup {ratio:.1f}x (target >= 5x): {'OK' if ratio >= 5 else 'BELOW TARGET'}")
    print(f"max |margin difference| {diff:.2e} (target <= 1e-4): {'OK' if diff <= 1e-4 else 'FAIL'}")
    print(f"preference accuracy (chosen > rejected): batched {np.mean(m_b > 0):.4f}, loop {np.mean(m_l > 0):.4f}")
    sys.exit(0 if ratio >= 5 and diff <= 1e-4 else 1)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
