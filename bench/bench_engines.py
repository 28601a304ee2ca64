"""Tokens/s of the two serving engines on one model, started as the gateway starts them.

    python bench/bench_engines.py                       # models/smollm2-135m, concurrency 1 and 16
    python bench/bench_engines.py --requests 32 --max-tokens 32 --concurrency 1,16

Starts vLLM (engine.kind=vllm, `--vllm-python`, default .venv-vllm/bin/python, built by
`make engine-vllm`) and then `transformers serve` (engine.kind=transformers) through
serve.engine, one at a time so they never share the CPU, and sends each the same bounded
set of non-streaming chat requests (temperature 0) on 127.0.0.1. Tokens are the engine's
own `usage.completion_tokens` (counted with the model's tokenizer when an engine leaves it
out). Printed per concurrency: generated tokens/s, p50 latency per request, and the ratio
vLLM/transformers, with the load average before and after each engine's run. One warm-up
round per engine is not timed. Engine logs go to a temporary folder (printed).
`--engines vllm,vllm-nolora,transformers` adds vLLM started without its LoRA flags.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = ["Explain how a bicycle works.", "Write a short story about a lighthouse.",
           "List some uses of copper and explain each.", "Describe the water cycle step by step.",
           "What should I pack for a week of hiking?", "Tell me about the history of paper.",
           "How do I make a good cup of tea?", "Why is the sky blue? Explain in detail."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_round(url: str, model: str, n: int, conc: int, max_tokens: int, count) -> dict:
    import httpx

    lat: list[float] = []
    tokens = 0
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=conc + 4)) as c:
        sem = asyncio.Semaphore(conc)

        async def one(i: int):
            nonlocal tokens
            body = {"model": model, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                    "max_tokens": max_tokens, "temperature": 0, "stream": False}
            async with sem:
                t = time.perf_counter()
                r = await c.post(f"{url}/v1/chat/completions", json=body)
                lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:300]}")
            data = r.json()
            used = (data.get("usage") or {}).get("completion_tokens")
            tokens += used if used else count(data["choices"][0]["message"]["content"] or "")

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    return {"tok_s": tokens / wall, "p50": statistics.median(lat), "tokens": tokens, "wall": wall}


LORA_FLAGS = {"--enable-lora": 0, "--max-lora-rank": 1, "--max-loras": 1}     # flag: values after it


def bench_engine(name: str, python: str | None, model: Path, args, log_dir: Path, count) -> dict:
    from omegaconf import OmegaConf

    from serve.engine import Engine
    from serve.settings import Engine as EngineSettings

    kind = "transformers" if name == "transformers" else "vllm"
    settings = EngineSettings(kind=kind, python=python, port=free_port(), start_timeout_s=args.start_timeout_s,
                              base_model=str(model) if kind == "vllm" else None)
    engine = Engine.from_config(OmegaConf.structured(settings), log_dir=log_dir)
    if name == "vllm-nolora":      # the gateway's command less its LoRA flags: what LoRA support costs
        cmd, i = [], 0
        while i < len(engine.command):
            a = engine.command[i]
            if a in LORA_FLAGS:
                i += 1 + LORA_FLAGS[a]
            else:
                cmd.append(a)
                i += 1
        engine.command = cmd
    name = str(model)      # vLLM serves the base under --model as given; transformers loads the folder
    t = time.perf_counter()
    engine.start()
    started = time.perf_counter() - t
    try:
        asyncio.run(run_round(engine.url, name, 4, 4, args.max_tokens, count))          # warm-up, untimed
        out = {"start_s": started, "load_before": os.getloadavg()[0]}
        for conc in args.conc:
            out[conc] = asyncio.run(run_round(engine.url, name, args.requests, conc, args.max_tokens, count))
        out["load_after"] = os.getloadavg()[0]
        return out
    finally:
        engine.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/smollm2-135m")
    ap.add_argument("--vllm-python", default=".venv-vllm/bin/python")
    ap.add_argument("--requests", type=int, default=32, help="requests per concurrency level (bounded)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--start-timeout-s", type=float, default=600.0)
    ap.add_argument("--engines", default="vllm,transformers",
                    help="run in this order, one at a time: transformers, vllm (as the gateway starts it), "
                         "vllm-nolora (the same without its LoRA flags)")
    args = ap.parse_args()
    args.conc = [int(c) for c in args.concurrency.split(",")]
    engines = args.engines.split(",")
    assert engines and set(engines) <= {"transformers", "vllm", "vllm-nolora"}, args.engines

    from transformers import AutoTokenizer

    model = (ROOT / args.model).resolve() if not Path(args.model).is_absolute() else Path(args.model)
    # abspath, not resolve(): the venv's python is a symlink to the base interpreter, and only
    # the venv path finds the venv's packages
    vllm_python = os.path.abspath(ROOT / args.vllm_python)
    tok = AutoTokenizer.from_pretrained(model)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    log_dir = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    res = {}
    for name in engines:     # one at a time
        res[name] = r = bench_engine(name, None if name == "transformers" else vllm_python, model, args,
                                     log_dir, count)
        print(f"  ({name}: " + ", ".join(f"conc {c} {r[c]['tok_s']:.1f} tok/s" for c in args.conc) + ")",
              flush=True)

    print(f"model {model.name}, {args.requests} non-streaming requests per level, max_tokens {args.max_tokens}, "
          f"temperature 0, {os.cpu_count()} cores; engine logs in {log_dir}")
    for name, r in res.items():
        print(f"  {name:12s} started in {r['start_s']:.0f}s; load average {r['load_before']:.2f} before, "
              f"{r['load_after']:.2f} after its run")
    label = {"vllm": "vLLM", "vllm-nolora": "vLLM-nolora", "transformers": "transformers"}
    if "transformers" not in engines:       # nothing to divide by: tokens/s and p50 only
        print(f"{'conc':>4}" + "".join(f" {label[n] + ' tok/s':>17} {'p50 s':>6}" for n in engines))
        for conc in args.conc:
            print(f"{conc:4d}" + "".join(f" {res[n][conc]['tok_s']:17.1f} {res[n][conc]['p50']:6.2f}"
                                         for n in engines))
        return
    others = [n for n in engines if n != "transformers"]
    print(f"{'conc':>4} {'transformers tok/s':>19} {'p50 s':>6}" + "".join(
        f" {label[n] + ' tok/s':>11} {'p50 s':>6} {label[n] + '/transformers':>18}" for n in others))
    for conc in args.conc:
        t = res["transformers"][conc]
        print(f"{conc:4d} {t['tok_s']:19.1f} {t['p50']:6.2f}" + "".join(
            f" {res[n][conc]['tok_s']:11.1f} {res[n][conc]['p50']:6.2f} {res[n][conc]['tok_s'] / t['tok_s']:17.2f}x"
            for n in others))


if __name__ == "__main__":
    main()
