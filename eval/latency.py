"""Latency and cost of answering: time to first token, tokens/s, peak memory.

Measured for the baseline and the candidate in the same job, on the first
`eval.latency.prompts` win-rate prompts, one prompt at a time after one untimed
warm-up answer, with the win-rate decoding and max_new_tokens:

    timing = measure_generate(model, tok, prompts, generation, max_length=512)   # HF generate here
    answers, timing = Engine(url).answers(model_name, prompts, generation, latency_prompts=8)
    metrics = latency_metrics(base_timing, cand_timing)   # eval_results rows

In process, a streamer's `put` stamps the first generated token (TTFT) and counts the
tokens; peak memory is `torch.cuda.max_memory_allocated` on a GPU (reset before the
timed answers) and, on a CPU, the process's resident set size (psutil) sampled every
`eval.latency.memory_sample_s` during them. Through an engine (`eval.engine.url`), each
answer is a streamed OpenAI-compatible chat completion: TTFT is the first chunk that
carries text (or the finish), tokens are the response's `usage.completion_tokens` (else
its text chunks); the engine's memory is not visible from here, so there is no
`peak_memory_mb`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np

from eval import EvalError
from eval.metrics import Metric

# metric name: (what it is, unit); every one is recorded for both models
LATENCY_METRICS = {
    "latency_ttft_p50_ms": "median time to first token",
    "latency_ttft_p95_ms": "95th percentile of time to first token",
    "latency_p95_ms": "95th percentile of the time to the whole answer",
    "tokens_per_s": "generated tokens / wall time, over the timed answers",
    "peak_memory_mb": "peak memory while answering",
}


class _Clock:
    """A generate() streamer: the first put() is the prompt, each later one a new token."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first: float | None = None
        self.tokens = 0
        self._prompt = True

    def put(self, value):
        if self._prompt:
            self._prompt = False
            return
        if self.first is None:
            self.first = time.perf_counter()
        self.tokens += int(value.numel())

    def end(self):
        pass


class _RssPeak:
    """The process's largest resident set size (bytes) seen while the block runs."""

    def __init__(self, every_s: float):
        import psutil

        self.proc, self.every, self.peak = psutil.Process(), max(float(every_s), 0.001), 0
        self._stop = threading.Event()

    def _sample(self):
        self.peak = max(self.peak, self.proc.memory_info().rss)

    def _loop(self):
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def measure_generate(model, tokenizer, prompts: Sequence[list[dict]], generation: dict, *,
                     max_length: int | None = None, memory_sample_s: float = 0.005) -> dict:
    """Per-prompt TTFT, whole-answer time and token count of HF generate, one prompt at a
    time, and the peak memory while answering them."""
    import torch

    g = dict(generation or {})
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    kwargs = {"max_new_tokens": int(g.get("max_new_tokens", 64)), "do_sample": bool(g.get("do_sample", False)),
              "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if kwargs["do_sample"]:
        kwargs.update(temperature=float(g.get("temperature", 1.0)), top_p=float(g.get("top_p", 1.0)))
    seed = int(g.get("seed", 0))
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"            # keep the generation prompt, as generate() does

    def answer(text: str, i: int) -> _Clock:
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False,
                        truncation=bool(max_length), max_length=max_length)
        enc = {k: v.to(device) for k, v in enc.items()}
        torch.manual_seed(seed + i)
        clock = _Clock()
        model.generate(**enc, streamer=clock, **kwargs)
        if cuda:
            torch.cuda.synchronize(device)
        clock.done = time.perf_counter()
        return clock

    ttft, total, tokens = [], [], []
    try:
        with torch.inference_mode():
            answer(texts[0], 0)                   # warm-up: lazy initialisation is not latency
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            with (nullcontext() if cuda else _RssPeak(memory_sample_s)) as rss:
                for i, text in enumerate(texts):
                    c = answer(text, i)
                    first = c.first if c.first is not None else c.done
                    ttft.append((first - c.start) * 1e3)
                    total.append((c.done - c.start) * 1e3)
                    tokens.append(c.tokens)
    finally:
        tokenizer.truncation_side = side
    if cuda:
        peak, how = torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    else:
        peak, how = rss.peak, "process RSS (psutil), sampled"
    return {"ttft_ms": ttft, "total_ms": total, "tokens": tokens, "peak_memory_mb": peak / 2**20,
            "memory": how, "source": f"HF generate on {device}"}


class Engine:
    """An OpenAI-compatible server that writes (and times) the win-rate answers."""

    def __init__(self, url: str, *, timeout_s: float = 300.0, concurrency: int = 4,
                 api_key_env: str | None = None):
        import httpx

        self.url = url.rstrip("/")
        if self.url.endswith("/v1"):
            self.url = self.url[:-3]
        headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise EvalError(f"eval.engine.api_key_env={api_key_env!r}, but that environment variable is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.concurrency = max(1, int(concurrency))
        self.client = httpx.Client(timeout=float(timeout_s), headers=headers,
                                   limits=httpx.Limits(max_connections=self.concurrency))

    def close(self):
        self.client.close()

    def chat(self, model: str, messages: list[dict], generation: dict, *, index: int = 0,
             max_tokens: int | None = None) -> dict:
        """One streamed answer: {"text", "ttft_ms", "total_ms", "tokens"}."""
        import httpx

        g = dict(generation or {})
        body = {"model": model, "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "max_tokens": int(max_tokens or g.get("max_new_tokens", 64)), "stream": True,
                "stream_options": {"include_usage": True}}
        if g.get("do_sample"):
            body.update(temperature=float(g.get("temperature", 1.0)), top_p=float(g.get("top_p", 1.0)),
                        seed=int(g.get("seed", 0)) + index)
        else:
            body["temperature"] = 0.0
        text, chunks, usage, first = [], 0, None, None
        start = time.perf_counter()
        try:
            with self.client.stream("POST", f"{self.url}/v1/chat/completions", json=body) as r:
                if r.status_code != 200:
                    r.read()
                    raise EvalError(f"engine {self.url}: HTTP {r.status_code} for model {model!r}: {r.text[:300]}")
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece is not None or choice.get("finish_reason"):
                            first = first or time.perf_counter()
                        if piece:
                            text.append(piece)
                            chunks += 1
        except httpx.HTTPError as e:
            raise EvalError(f"engine {self.url}: {type(e).__name__}: {e}") from e
        done = time.perf_counter()
        tokens = int((usage or {}).get("completion_tokens") or chunks)
        return {"text": "".join(text).strip(), "ttft_ms": ((first or done) - start) * 1e3,
                "total_ms": (done - start) * 1e3, "tokens": tokens}

    def answers(self, model: str, prompts: Sequence[list[dict]], generation: dict, *,
                latency_prompts: int = 0) -> tuple[list[str], dict | None]:
        """Answers to every prompt; the first `latency_prompts` are asked one at a time
        (after an untimed one-token warm-up, which also loads the model) and timed, the rest
        `concurrency` at a time."""
        if not prompts:
            return [], None
        k = min(int(latency_prompts), len(prompts))
        self.chat(model, prompts[0], generation, max_tokens=1)          # warm-up (loads the model)
        timed = [self.chat(model, p, generation, index=i) for i, p in enumerate(prompts[:k])]
        with ThreadPoolExecutor(self.concurrency) as pool:
            rest = list(pool.map(lambda ip: self.chat(model, ip[1], generation, index=ip[0]),
                                 list(enumerate(prompts))[k:]))
        answers = [r["text"] for r in timed + rest]
        if not timed:
            return answers, None
        return answers, {"ttft_ms": [r["ttft_ms"] for r in timed], "total_ms": [r["total_ms"] for r in timed],
                         "tokens": [r["tokens"] for r in timed], "peak_memory_mb": None,
                         "memory": "not measured (the engine is another process)",
                         "source": f"engine {self.url} (model {model})"}


def _figures(t: dict) -> dict[str, float]:
    ttft, total = np.asarray(t["ttft_ms"], dtype=np.float64), np.asarray(t["total_ms"], dtype=np.float64)
    secs = total.sum() / 1e3
    return {"latency_ttft_p50_ms": float(np.percentile(ttft, 50)),
            "latency_ttft_p95_ms": float(np.percentile(ttft, 95)),
            "latency_p95_ms": float(np.percentile(total, 95)),
            "tokens_per_s": float(sum(t["tokens"]) / secs) if secs > 0 else math.nan,
            "peak_memory_mb": math.nan if t.get("peak_memory_mb") is None else float(t["peak_memory_mb"])}


def latency_metrics(base: dict, cand: dict) -> list[Metric]:
    """One eval_results row per figure: baseline, candidate, diff (no interval: a single
    timed pass each); details hold the ratio, the sample and how it was measured."""
    b, c = _figures(base), _figures(cand)
    n = min(len(base["ttft_ms"]), len(cand["ttft_ms"]))
    out = []
    for name, what in LATENCY_METRICS.items():
        if not (math.isfinite(b[name]) or math.isfinite(c[name])):
            continue
        ratio = c[name] / b[name] if math.isfinite(b[name]) and b[name] > 0 else math.nan
        unit = "MB" if name == "peak_memory_mb" else "tokens/s" if name == "tokens_per_s" else "ms"
        details = {"unit": unit, "what": what, "ratio": ratio if math.isfinite(ratio) else None,
                   "prompts": n, "baseline_source": base.get("source"), "candidate_source": cand.get("source")}
        if name == "peak_memory_mb":
            details["memory"] = {"baseline": base.get("memory"), "candidate": cand.get("memory")}
        out.append(Metric(name, b[name], c[name], c[name] - b[name], math.nan, math.nan, n, math.nan, details))
    return out
