"""Training throughput: `python -m train` against plain TRL, and packing against padding.

    .venv/bin/python bench/bench_train.py            # ~2-3 min on 2 CPU cores

1. Wiring overhead: the same SFT (same model, snapshot, TRL arguments) run by
   `python -m train` and by a minimal script that calls `trl.SFTTrainer` directly.
   Figure: training tokens/s (non-padding tokens / train_runtime), median of the
   repeats, run alternately so drift hits both; target ratio >= 0.95.
2. Packing: one epoch of SFT over data with a realistic spread of lengths
   (log-normal prompt and answer lengths), padded batches vs TRL's padding-free
   best-fit packing. Figures: tokens/s of each and the speed-up.

Both parts run in this one invocation on one bench model (a 4-layer, 256-wide
Llama built by train.models) so the ratios compare like with like.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPEATS = 5
N_CHATS = 240
# one thread per process: on a shared 2-core machine two threads per run swing 10x with load
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
ARGS = {"max_steps": 15, "per_device_train_batch_size": 8, "max_length": 256,
        "learning_rate": 1e-3, "logging_steps": 10, "save_steps": 100000, "seed": 42}

DIRECT = r'''
import json, sys
import pyarrow.parquet as pq
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

model_dir, snap, out, args = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
train = Dataset(pq.read_table(f"{snap}/sft/train.parquet", columns=["messages"]))
config = SFTConfig(output_dir=out, use_cpu=True, bf16=False, activation_checkpointing=False,
                   report_to="none", include_num_input_tokens_seen="non_padding", **args)
trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tok)
m = trainer.train().metrics
print("RESULT " + json.dumps({"tokens": trainer.state.num_input_tokens_seen,
                              "runtime": m["train_runtime"], "steps": trainer.state.global_step}))
'''


def lognormal_words(rng: random.Random, median: float, sigma: float, cap: int) -> int:
    return max(2, min(cap, int(rng.lognormvariate(0, sigma) * median)))


def realistic_rows(n: int, seed: int = 0) -> dict:
    """SFT chats whose prompt/answer lengths follow a log-normal, as product logs do."""
    from train.models import default_corpus

    rng = random.Random(seed)
    words = " ".join(default_corpus(200, seed)).split()
    def text(k):
        return " ".join(rng.choice(words) for _ in range(k))
    rows = []
    for i in range(n):
        p, a = lognormal_words(rng, 30, 0.9, 300), lognormal_words(rng, 40, 0.9, 300)
        rows.append({"messages": [{"role": "user", "content": text(p)},
                                  {"role": "assistant", "content": text(a)}],
                     "interaction_id": f"b{i}", "app": "bench", "task": "sft", "user_id": None,
                     "origin": "accept"})
    return {"sft": {"train": rows, "eval": []}, "pref": {"train": [], "eval": []},
            "kto": {"train": [], "eval": []}}


def write_snapshot(root: Path, rows: dict, name: str) -> Path:
    """The bench rows as a snapshot folder (schema from signals.snapshot, the contract's owner)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from signals.snapshot import schema

    path = root / f"{name}-0001"
    for kind, splits in rows.items():
        (path / kind).mkdir(parents=True, exist_ok=True)
        for split, items in splits.items():
            pq.write_table(pa.Table.from_pylist(items, schema=schema(kind)), path / kind / f"{split}.parquet")
    counts = {k: {s: len(v) for s, v in splits.items()} for k, splits in rows.items()}
    (path / "manifest.json").write_text(json.dumps({"version": path.name, "recipe": {"name": name},
                                                    "counts": counts, "kto_weights": {}}))
    return path


def run_train(model_dir: Path, snap: Path, out: Path, args: dict) -> dict:
    overrides = [f"method.args.{k}={v}" for k, v in args.items() if k != "seed"]
    cmd = [sys.executable, "-m", "train", "model=tiny", f"model.name_or_path={model_dir}",
           f"snapshot={snap}", f"output_root={out}", "stages=[build,train]", "exp_name=bench",
           "tracking.report_to=[]", f"seed={args['seed']}", "resume=false", *overrides]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, env={**os.environ, **ENV})
    manifest = json.loads(max((out / "bench").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime).read_text())
    m = manifest["metrics"]
    return {"tokens": m["num_input_tokens_seen"], "runtime": m["train_runtime"], "steps": m["global_step"]}


def run_direct(model_dir: Path, snap: Path, out: Path, args: dict) -> dict:
    res = subprocess.run([sys.executable, "-c", DIRECT, str(model_dir), str(snap), str(out), json.dumps(args)],
                         cwd=ROOT, check=True, capture_output=True, text=True, env={**os.environ, **ENV})
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def tps(r: dict) -> float:
    return r["tokens"] / r["runtime"]


def main() -> None:
    from train.models import build_tiny

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    print(f"threads per process: 1 (OMP_NUM_THREADS); load average at start: {os.getloadavg()[0]:.1f}")
    model_dir = build_tiny(tmp / "model", hidden_size=256, num_layers=4, num_heads=4, vocab_size=512)
    snap = write_snapshot(tmp / "snaps", realistic_rows(N_CHATS), "bench")
    lengths = []
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    import pyarrow.parquet as pq

    for msgs in pq.read_table(snap / "sft" / "train.parquet", columns=["messages"]).column(0).to_pylist():
        lengths.append(len(tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]))
    lengths.sort()
    print(f"bench model: Llama 4 layers x 256 wide, CPU; data: {len(lengths)} chats, "
          f"tokens p10/p50/p90/max = {lengths[len(lengths)//10]}/{lengths[len(lengths)//2]}/"
          f"{lengths[9*len(lengths)//10]}/{lengths[-1]}")

    # 1. python -m train vs direct TRL, alternating
    ours, direct = [], []
    for i in range(REPEATS):
        ours.append(run_train(model_dir, snap, tmp / f"runs{i}", ARGS))
        direct.append(run_direct(model_dir, snap, str(tmp / f"direct{i}"), ARGS))
        print(f"  pair {i}: python -m train {tps(ours[-1]):7.0f} tok/s   direct TRL {tps(direct[-1]):7.0f} tok/s")
    paired = [tps(o) / tps(d) for o, d in zip(ours, direct, strict=True)]
    best = max(map(tps, ours)) / max(map(tps, direct))
    print(f"[1] SFT {ARGS['max_steps']} steps x {ARGS['per_device_train_batch_size']} x <= {ARGS['max_length']} tokens, "
          f"{REPEATS} alternating pairs: python -m train / direct TRL tokens/s = "
          f"{statistics.median(paired):.3f} (median of pairs), {best:.3f} (best vs best); target >= 0.95")

    # 2. packing vs padding: one epoch over the same chats
    epoch = {"num_train_epochs": 1, "max_steps": -1, "per_device_train_batch_size": 8, "max_length": 512,
             "learning_rate": 1e-3, "logging_steps": 10, "save_steps": 100000, "seed": 42}
    res = {}
    for name, extra in (("padded", {"packing": False}), ("packed", {"packing": True})):
        t0 = time.time()
        res[name] = run_train(model_dir, snap, tmp / f"pack-{name}", {**epoch, **extra})
        res[name]["wall"] = time.time() - t0
        print(f"  {name}: {res[name]['steps']} steps, {res[name]['tokens']} tokens, "
              f"{res[name]['runtime']:.2f} s training, {tps(res[name]):.0f} tok/s")
    print(f"[2] one epoch of SFT, {N_CHATS} chats, batch 8, max_length 512: packing (padding-free) "
          f"{tps(res['packed']):.0f} tok/s vs padded {tps(res['padded']):.0f} tok/s: "
          f"speed-up {tps(res['packed']) / tps(res['padded']):.2f}x "
          f"(epoch time {res['padded']['runtime']:.2f} s -> {res['packed']['runtime']:.2f} s)")


if __name__ == "__main__":
    main()
