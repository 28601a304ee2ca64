"""The gateway's cost over calling the engine directly, on loopback, in one run.

    python bench/bench_serve.py                       # tiny model, 1 and 32 concurrent streams
    python bench/bench_serve.py --model models/smollm2-135m --requests 64 --max-tokens 32
    python bench/bench_serve.py --variants-only --model models/smollm2-135m    # int8/int4 vs merged

Starts `transformers serve` (serve.engine, as the gateway does) and the gateway
(`python -m serve gateway engine.url=...`) on 127.0.0.1, then sends the same
bounded set of streaming requests to each, alternating rounds (engine, gateway, engine,
gateway) so drift in machine load hits both. Printed per concurrency: p50/p95 latency to
the last byte for each, the gateway's added p50 (ms), and its throughput as a ratio of the
engine's (requests/s). Added latency is measured per request pair position, not across
runs: p50(gateway) - p50(engine) over the same requests. Everything stays on loopback;
the request count is bounded (--requests per round).

Variants: the model is quantized as `python -m serve export` does (serve.export.write_variant:
torchao int8 and int4 weight-only), and merged, int8 and int4 are timed in turn, `--rounds`
times, with serve.export.bench (batched greedy tokens/s, one-prompt p50): the ratios to merged
are medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def round_trip(url: str, headers: dict, model: str | None, n: int, conc: int, max_tokens: int) -> dict:
    import httpx

    lat: list[float] = []
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=conc + 4)) as c:
        sem = asyncio.Semaphore(conc)

        async def one(i: int):
            body = {"messages": [{"role": "user", "content": f"question {i % 7}"}], "max_tokens": max_tokens,
                    "stream": True, "temperature": 0}
            if model:
                body["model"] = model
            async with sem:
                t = time.perf_counter()
                async with c.stream("POST", url, json=body, headers=headers) as r:
                    assert r.status_code == 200, await r.aread()
                    async for _ in r.aiter_raw():
                        pass
                lat.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"p50": statistics.median(lat) * 1000, "p95": lat[int(0.95 * (len(lat) - 1))] * 1000, "rps": n / wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model folder (default: a tiny model built here)")
    ap.add_argument("--requests", type=int, default=96, help="requests per round (bounded)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--variants-only", action="store_true", help="only the int8/int4 vs merged part")
    ap.add_argument("--no-variants", action="store_true", help="only the gateway part")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the variants part")
    args = ap.parse_args()
    model = Path(args.model).resolve() if args.model else None
    if not args.variants_only:
        gateway_part(args, model)
    if not args.no_variants:
        variants_part(args, model)


def variants_part(args, model: Path | None) -> None:
    from types import SimpleNamespace

    import torch

    from serve.export import bench, write_variant
    from train.models import build_tiny

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-variants-"))
    merged = model or build_tiny(tmp / "tiny")
    run = SimpleNamespace(run_id="bench", manifest={}, snapshot_version=None, snapshot_path=None, run_dir=tmp)
    paths = {"merged": merged}
    for name in ("int8", "int4"):
        vdir, _, _ = write_variant(run, merged, tmp, name)
        paths[name] = vdir / "model"
    size = {k: sum(f.stat().st_size for f in Path(p).glob("*.safetensors")) / 2**20 for k, p in paths.items()}
    rows = {k: [] for k in paths}
    for _ in range(args.rounds):
        for name, path in paths.items():
            rows[name].append(bench(path, max_new_tokens=16))
    print(f"variants of {Path(merged).name}: {args.rounds} rounds, 4 prompts x 16 greedy tokens, "
          f"{args.threads} thread(s), load {os.getloadavg()[0]:.2f}")
    print(f"{'variant':8} {'weights MB':>10} {'tokens/s':>9} {'vs merged':>9} {'p50 ms':>8} {'vs merged':>9}")
    base = {k: statistics.median(r[k] for r in rows["merged"]) for k in ("tokens_per_s", "latency_p50_ms")}
    for name, rs in rows.items():
        tps = statistics.median(r["tokens_per_s"] for r in rs)
        p50 = statistics.median(r["latency_p50_ms"] for r in rs)
        print(f"{name:8} {size[name]:10.1f} {tps:9.1f} {tps / base['tokens_per_s']:8.2f}x {p50:8.0f} "
              f"{p50 / base['latency_p50_ms']:8.2f}x")


def gateway_part(args, model: Path | None) -> None:

    from omegaconf import OmegaConf

    from serve.engine import Engine
    from serve.keys import KeyFile
    from serve.settings import Engine as EngineSettings
    from tests.serve.conftest import free_port, wait_for, write_pointer
    from train.models import build_tiny

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = model or build_tiny(tmp / "tiny")
    engine = Engine.from_config(OmegaConf.structured(EngineSettings(port=free_port())), log_dir=tmp)
    engine.start()
    write_pointer(tmp / "runs", "production", "bench-run", model)
    key = KeyFile(tmp / "keys.json").add("bench")
    port = free_port()
    log = open(tmp / "gateway.log", "wb")
    gw = subprocess.Popen([sys.executable, "-m", "serve", "gateway", f"port={port}", f"pointer_dir={tmp / 'runs'}",
                           f"keys_file={tmp / 'keys.json'}", f"store={tmp / 'signal.duckdb'}",
                           f"capture.landing={tmp / 'landing'}", f"engine.url={engine.url}",
                           "limits.requests_per_minute=0"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", gw, timeout=60, log=tmp / "gateway.log")
        direct = (f"{engine.url}/v1/chat/completions", {}, str(model))
        via = (f"http://127.0.0.1:{port}/v1/chat/completions", {"Authorization": f"Bearer {key}"}, None)
        asyncio.run(round_trip(*direct, 8, 4, args.max_tokens))          # warm both paths
        asyncio.run(round_trip(*via, 8, 4, args.max_tokens))
        load = os.getloadavg()[0]
        print(f"model {model.name}, {args.requests} streaming requests x {args.rounds} rounds per side, "
              f"max_tokens {args.max_tokens}, load {load:.2f}, {os.cpu_count()} cores")
        print(f"{'conc':>4} {'engine p50':>11} {'gateway p50':>12} {'added p50':>10} {'engine p95':>11} "
              f"{'gateway p95':>12} {'engine rps':>11} {'gateway rps':>12} {'ratio':>6}")
        results = {}
        for conc in [int(c) for c in args.concurrency.split(",")]:
            e, g = [], []
            for _ in range(args.rounds):
                e.append(asyncio.run(round_trip(*direct, args.requests, conc, args.max_tokens)))
                g.append(asyncio.run(round_trip(*via, args.requests, conc, args.max_tokens)))
            med = {k: (statistics.median(x[k] for x in e), statistics.median(x[k] for x in g))
                   for k in ("p50", "p95", "rps")}
            results[conc] = med
            print(f"{conc:4d} {med['p50'][0]:9.1f}ms {med['p50'][1]:10.1f}ms {med['p50'][1] - med['p50'][0]:8.2f}ms "
                  f"{med['p95'][0]:9.1f}ms {med['p95'][1]:10.1f}ms {med['rps'][0]:11.1f} {med['rps'][1]:12.1f} "
                  f"{med['rps'][1] / med['rps'][0]:6.3f}")
        stats = json.loads(subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/v1/gateway/stats", "-H",
                                           f"Authorization: Bearer {key}"], capture_output=True, text=True).stdout)
        print(f"gateway capture: {stats['capture']['written']} written, {stats['capture']['dropped']} dropped")
    finally:
        gw.terminate()
        gw.wait(timeout=30)
        engine.stop()


if __name__ == "__main__":
    main()
