"""Fixtures for eval tests: contract-1 snapshots and contract-2 run dirs built here.

The data has a learnable house style: chosen answers open with words from GOOD,
rejected ones with words from BAD, over the same filler. A few steps of a
reference-free DPO loss (plain PyTorch, on the scorer's own differentiable core)
teach the tiny model the style, or its opposite when the labels are flipped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

GOOD = ["thanks", "great", "help", "good", "yes", "best"]
BAD = ["sorry", "bad", "error", "no", "not", "issue"]
FILLER = "the order refund ship code function value table query data account email time".split()

MSGS = "list<struct<role: string, content: string>>"


def _words(rng, pool, k):
    return " ".join(rng.choice(pool) for _ in range(k))


def make_rows(n: int, seed: int, app: str = "support", task: str = "reply") -> dict[str, list[dict]]:
    """n rows per kind (sft, pref, kto) in contract-1 columns."""
    rng = random.Random(seed)
    sft, pref, kto = [], [], []
    for i in range(n):
        prompt = [{"role": "user", "content": "customer asks " + _words(rng, FILLER, 4) + "?"}]
        filler = _words(rng, FILLER, 5)
        good = f"{_words(rng, GOOD, 3)} {filler}."
        bad = f"{_words(rng, BAD, 3)} {filler}."
        extra = {"app": app, "task": task, "user_id": f"u{i % 7}", "origin": "edit"}
        iid = f"s{seed}-{i}"
        sft.append({"messages": prompt + [{"role": "assistant", "content": good}],
                    "interaction_id": iid, **extra})
        pref.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": bad}], "interaction_id": iid, **extra})
        kto.append({"prompt": prompt, "completion": [{"role": "assistant", "content": good}], "label": True,
                    "interaction_id": iid + "-d", **extra, "origin": "accept"})
        kto.append({"prompt": prompt, "completion": [{"role": "assistant", "content": bad}], "label": False,
                    "interaction_id": iid + "-u", **extra, "origin": "reject"})
    return {"sft": sft, "pref": pref, "kto": kto}


def _schema(kind: str):
    import pyarrow as pa

    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    extras = [("interaction_id", pa.string()), ("app", pa.string()), ("task", pa.string()),
              ("user_id", pa.string()), ("origin", pa.string())]
    cols = {"sft": [("messages", msg)],
            "pref": [("prompt", msg), ("chosen", msg), ("rejected", msg)],
            "kto": [("prompt", msg), ("completion", msg), ("label", pa.bool_())]}[kind]
    return pa.schema(cols + extras)


def write_snapshot(root: Path, version: str, train: dict, eval_: dict) -> Path:
    """A contract-1 snapshot directory; kinds missing from a dict get 0-row files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(root) / version
    counts = {}
    for kind in ("sft", "pref", "kto"):
        (path / kind).mkdir(parents=True, exist_ok=True)
        counts[kind] = {}
        for split, rows in (("train", train.get(kind, [])), ("eval", eval_.get(kind, []))):
            pq.write_table(pa.Table.from_pylist(rows, schema=_schema(kind)), path / kind / f"{split}.parquet")
            counts[kind][split] = len(rows)
    manifest = {"version": version, "recipe": {"name": "test"}, "counts": counts, "exclusions": {},
                "watermark": {}, "builder_version": "test", "created_at": "2026-01-01T00:00:00Z",
                "redactions": {}, "kto_weights": {"desirable_weight": 1.0, "undesirable_weight": 1.0}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory) -> Path:
    """Train split of 64 examples per kind, eval split of 60."""
    return write_snapshot(tmp_path_factory.mktemp("snapshots"), "v-test",
                          make_rows(64, seed=1), make_rows(60, seed=2))


def train_run(base: Path, run_dir: Path, snapshot: Path, *, flip: bool = False, steps: int = 12,
              lr: float = 3e-3, adapter: bool = False, seed: int = 0, method: str = "dpo") -> Path:
    """Train the tiny model a few steps of reference-free DPO on the snapshot's pref/train
    (chosen and rejected swapped when `flip`), and save a contract-2 run dir."""
    import pyarrow.parquet as pq
    import torch
    from torch.nn.functional import logsigmoid

    from eval.scoring import collate, completion_logps, encode
    from train.models import load_causal_lm, load_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)                      # see _one_thread below
    torch.manual_seed(seed)
    tok = load_tokenizer(str(base))
    model = load_causal_lm(str(base), tokenizer=tok)
    if adapter:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
        lr = lr * 3
    rows = pq.read_table(Path(snapshot) / "pref" / "train.parquet").to_pylist()
    chosen, rejected = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    if flip:
        chosen, rejected = rejected, chosen
    prompts = [r["prompt"] for r in rows]
    enc = encode(tok, prompts + prompts, chosen + rejected)
    n = len(rows)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        idx = [(step * 16 + k) % n for k in range(16)]
        ids, attn, comp = collate([enc[i] for i in idx] + [enc[n + i] for i in idx], tok.pad_token_id)
        lp, _ = completion_logps(model, ids, attn, comp)
        loss = -logsigmoid(0.5 * (lp[:16] - lp[16:])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    run_dir = Path(run_dir)
    arts = {"adapter": None, "model": None}
    if adapter:
        model.save_pretrained(str(run_dir / "adapter"))
        tok.save_pretrained(str(run_dir / "adapter"))
        arts["adapter"] = "adapter"
    else:
        model.save_pretrained(str(run_dir / "model"))
        tok.save_pretrained(str(run_dir / "model"))
        arts["model"] = "model"
    manifest = {"run_id": run_dir.name, "exp_name": run_dir.parent.name, "method": method,
                "snapshot_version": Path(snapshot).name, "snapshot_path": str(snapshot),
                "base_model": str(base), "peft": adapter, "artifacts": arts,
                "metrics": {"train_loss": loss.item()}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    torch.set_num_threads(threads)
    return run_dir


PARROT = "thanks, great help."


def parrot_run(base: Path, run_dir: Path, snapshot: Path, *, answer: str = PARROT, steps: int = 30) -> Path:
    """The tiny model taught to answer every prompt with `answer` (a few steps of SFT on the
    snapshot's sft/train prompts): greedy decoding gives readable, known text."""
    import pyarrow.parquet as pq
    import torch

    from eval.scoring import collate, completion_logps, encode
    from train.models import load_causal_lm, load_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = load_tokenizer(str(base))
    model = load_causal_lm(str(base), tokenizer=tok)
    prompts = [r["messages"][:-1] for r in pq.read_table(Path(snapshot) / "sft" / "train.parquet").to_pylist()]
    enc = encode(tok, prompts, [[{"role": "assistant", "content": answer}]] * len(prompts))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        ids, attn, comp = collate([enc[(step * 16 + k) % len(enc)] for k in range(16)], tok.pad_token_id)
        lp, n = completion_logps(model, ids, attn, comp)
        loss = -(lp / n).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    run_dir = Path(run_dir)
    model.save_pretrained(str(run_dir / "model"))
    tok.save_pretrained(str(run_dir / "model"))
    manifest = {"run_id": run_dir.name, "exp_name": run_dir.parent.name, "method": "sft",
                "snapshot_version": Path(snapshot).name, "snapshot_path": str(snapshot),
                "base_model": str(base), "peft": False, "artifacts": {"adapter": None, "model": "model"},
                "metrics": {"train_loss": loss.item()}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    torch.set_num_threads(threads)
    return run_dir


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def good_run(tiny_model_dir, snapshot, runs_root) -> Path:
    return train_run(tiny_model_dir, runs_root / "dpo_tiny" / "good", snapshot)


@pytest.fixture(scope="session")
def flipped_run(tiny_model_dir, snapshot, runs_root) -> Path:
    return train_run(tiny_model_dir, runs_root / "dpo_tiny" / "flipped", snapshot, flip=True)


def compose_cfg(tmp_path: Path, *overrides: str):
    """The real conf/ composed, shrunk for CPU tests, writing into tmp_path."""
    from eval.__main__ import compose

    return compose([f"store={tmp_path / 'signal.duckdb'}", f"output_root={tmp_path / 'runs'}",
                    "eval.bootstrap.resamples=300", "eval.generation.max_prompts=8",
                    "eval.generation.max_new_tokens=8", "eval.generation.batch_size=8", *overrides])


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and a busy shared CPU makes two spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def engine_url(tmp_path_factory):
    """A real OpenAI-compatible engine: `transformers serve` on a free port (CPU), loading
    the model folder each request names; killed at teardown."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    import httpx

    exe = Path(sys.executable).parent / "transformers"
    if not exe.is_file() and not shutil.which("transformers"):
        pytest.skip("the transformers CLI (transformers serve) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("engine") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe if exe.is_file() else shutil.which("transformers")), "serve",
                                 "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not come up on {url}:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
