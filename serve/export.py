"""`python -m serve export RUN`: the merged model and weight-only quantized variants, each gated.

    python -m serve export runs/dpo_lora_tiny/20260101-120000 --variants int8,int4 --store data/signal.duckdb

Writes, under `--out` (default RUN_DIR/export):

    merged/         a plain `from_pretrained` folder: model.safetensors, config.json,
                    generation_config.json, tokenizer files and chat_template.jinja (a LoRA run's
                    adapter is merged into its base; a full run is re-saved as is). What vLLM and
                    `transformers serve` load.
    int8/ int4/     run-like directories: manifest.json (run id `<run_id>-int8`, the parent's
                    snapshot, `base_model` = merged/) and model/, the torchao-quantized checkpoint
                    (safetensors with torchao's tensor-subclass metadata; loads with
                    `AutoModelForCausalLM.from_pretrained` when torchao is installed).
    export.json     what was written, sizes, speed and decisions (also in the store's `variants`).

Each variant is evaluated by the eval harness (`eval.harness.evaluate`) against the merged
model on the run's snapshot, under a non-inferiority gate: primary `sft_loglik` with
margin `-MARGIN` (the lower confidence bound of variant - merged, nats per token, must stay
above -MARGIN) and guards (default `preference_margin_norm` may not drop by more than 0.05
nats per token; continuous metrics, because a 0/1 accuracy over a few hundred pairs cannot
rule out small drops). No improvement is asked for; `promote` here means "may be served in
place of merged". Nothing moves `production`.
Size on disk and speed (batched greedy generation, tokens/s; one request at a time, p50
latency) are measured on the machine that exports, and recorded with the decision in the
store (serve/variants.py).

Quantization (torchao, weight-only, linear layers; embeddings and the tied lm_head stay as they are):
    int8  Int8WeightOnlyConfig(): per-channel int8 weights.
    int4  IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32)): int4 values with
          per-group scales, stored unpacked in int8 bytes (torchao 0.18's only int4 layout with a CPU
          kernel path), so it is no smaller on disk than int8: it measures int4's accuracy cost.
          Packed int4 (Int4WeightOnlyConfig) needs CUDA kernels (mslk, or tinygemm with bfloat16)
          and is not written here.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from serve import ServeError
from serve.variants import Variant, folder_bytes, list_variants, record_variant

VARIANTS = ("int8", "int4")
INT4_GROUP_SIZE = 32
DEFAULT_MARGIN = 0.05                      # nats per token a variant may lose against merged
DEFAULT_GUARDS = {"preference_margin_norm": 0.05}   # nats per token, chosen - rejected
BENCH_PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List three primary colors.",
    "How do I reverse a list in Python?",
]


def _log(msg: str) -> None:
    print(f"export: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the run


def resolve_run_dir(ref: str, store: str | None, wait: float = 10.0) -> Path:
    """A run directory from a run directory or a run id registered in the store."""
    p = Path(ref)
    if (p / "manifest.json").is_file():
        return p
    from signals.store import StoreMissing
    from signals.store import store as open_store

    try:
        with open_store(store, read_only=True, wait=wait) as con:
            row = con.execute("SELECT run_dir FROM runs WHERE run_id = ?", [ref]).fetchone()
    except StoreMissing:
        row = None
    if not row:
        raise ServeError(f"run {ref!r}: neither a run directory (no {p / 'manifest.json'}) nor a run id "
                         "registered in the store (pass the run directory)")
    return Path(row[0])


def _model_cfg(run) -> dict:
    """The run's frozen `model` node (dtype, attention, chat template), or {}."""
    frozen = Path(run.run_dir) / "config.yaml"
    if not frozen.is_file():
        return {}
    from omegaconf import OmegaConf

    node = OmegaConf.load(str(frozen)).get("model")
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def _replace_dir(tmp: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)


def _tmp_for(dest: Path) -> Path:
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


# ----------------------------------------------------------------------------- writing


def write_merged(run, out: Path, model_cfg: dict) -> Path:
    """out/merged: the run's model (adapter merged into its base) as a plain from_pretrained folder."""
    from train.models import load_run_for_inference

    dest = out / "merged"
    tmp = _tmp_for(dest)
    model, tok = load_run_for_inference(run, model_cfg)
    model.save_pretrained(str(tmp))          # safetensors, config.json, generation_config.json
    tok.save_pretrained(str(tmp))            # tokenizer files and chat_template.jinja
    del model
    _replace_dir(tmp, dest)
    return dest


def quant_config(name: str):
    """(torchao config, format label) for a variant name."""
    import torch
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, PerGroup

    if name == "int8":
        return Int8WeightOnlyConfig(), "torchao Int8WeightOnlyConfig (per-channel int8)"
    if name == "int4":
        return (IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP_SIZE)),
                f"torchao IntxWeightOnlyConfig int4, group {INT4_GROUP_SIZE}, stored unpacked in int8")
    raise ServeError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def write_variant(run, merged: Path, out: Path, name: str) -> tuple[Path, str, dict]:
    """out/NAME: manifest.json (a run the eval harness reads) and model/ (the quantized checkpoint).

    Returns (variant dir, format label, the quantization_config written in config.json)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

    qc, label = quant_config(name)
    dest = out / name
    tmp = _tmp_for(dest)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32,
                                                     quantization_config=TorchAoConfig(qc))
        model.save_pretrained(str(tmp / "model"))
        AutoTokenizer.from_pretrained(str(merged)).save_pretrained(str(tmp / "model"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)        # no half-written variant left behind
        raise
    qdict = json.loads((tmp / "model" / "config.json").read_text()).get("quantization_config") or {}
    del model
    m = run.manifest
    manifest = {"run_id": f"{run.run_id}-{name}", "exp_name": m.get("exp_name"), "method": m.get("method"),
                "snapshot_version": run.snapshot_version, "snapshot_path": run.snapshot_path,
                "base_model": str(merged.resolve()), "peft": False, "artifacts": {"model": "model"},
                "variant_of": run.run_id, "variant": name, "format": label, "parent_run_dir": str(run.run_dir)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _replace_dir(tmp, dest)
    return dest, label, qdict


# ----------------------------------------------------------------------------- speed


def bench(path: Path, model_cfg: dict | None = None, *, prompts: list[str] | None = None,
          max_new_tokens: int = 16) -> dict:
    """Greedy generation of exactly `max_new_tokens` per prompt: batched tokens/s and one-at-a-time p50.

    Loads through train.models.load_for_inference, the eval harness's loader, so a
    variant that benches also loads in the harness."""
    import torch

    from train.models import load_for_inference

    prompts = list(prompts or BENCH_PROMPTS)
    model, tok = load_for_inference(str(path), model_cfg)
    tok.padding_side = "left"
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                     tokenize=False) for p in prompts]
    gen = {"do_sample": False, "max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens,
           "pad_token_id": tok.pad_token_id}

    def run(batch: list[str]) -> tuple[float, int]:
        """(seconds, generated tokens) of one greedy generate call."""
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, **gen)
        return time.perf_counter() - t0, len(batch) * (out.shape[1] - enc["input_ids"].shape[1])

    run(texts[:1])                                          # warm-up (allocations, kernel choice)
    latencies = [run([t])[0] for t in texts]
    batched, tokens = run(texts)
    return {"tokens_per_s": tokens / batched,
            "latency_p50_ms": 1000 * statistics.median(latencies),
            "bench": {"prompts": len(texts), "max_new_tokens": max_new_tokens, "batch": len(texts),
                      "decoding": "greedy", "device": "cpu", "threads": torch.get_num_threads(),
                      "loadavg_1m": round(os.getloadavg()[0], 2),
                      "batched_s": round(batched, 4), "latencies_ms": [round(1000 * x, 1) for x in latencies]}}


# ----------------------------------------------------------------------------- the gate


def eval_config(store: str, merged: Path, *, margin: float, guards: dict[str, float], sets: list[str],
                model_cfg: dict):
    """The root config for the harness: baseline = merged, a non-inferiority gate, no auto-promotion."""
    from omegaconf import OmegaConf, open_dict

    from eval.__main__ import compose

    cfg = compose([f"store={store}", f"eval.baseline={merged.resolve()}", "eval.metrics=[preference,likelihood]",
                   "gate.primary=sft_loglik", f"gate.margin={-float(margin)}", "gate.auto_promote=false",
                   *sets])
    with open_dict(cfg):
        if not any(s.startswith("gate.guards") for s in sets):
            cfg.gate.guards = dict(guards)
        if model_cfg:
            cfg.model = OmegaConf.merge(cfg.model, OmegaConf.create(model_cfg))
    return cfg


def gate_variant(cfg, variant_dir: Path, store: str) -> dict:
    """Run the eval harness on a variant; {"decision", "reasons", "eval_id"} (failures: inconclusive)."""
    from eval import EvalError
    from eval.harness import evaluate

    try:
        r = evaluate(cfg, str(variant_dir))
        return {"decision": r["decision"], "reasons": r["reasons"], "eval_id": r["eval_id"],
                "metrics": r["metrics"]}
    except EvalError as e:                   # recorded by the harness as inconclusive
        from eval.registry import latest_decision
        from signals.store import store as open_store

        run_id = json.loads((variant_dir / "manifest.json").read_text())["run_id"]
        with open_store(store, read_only=True) as con:
            last = latest_decision(con, run_id)
        return {"decision": "inconclusive", "reasons": [str(e)], "eval_id": last["eval_id"] if last else None}


# ----------------------------------------------------------------------------- the verb


def parse_variants(spec: str) -> list[str]:
    names = [v.strip() for v in (spec or "").split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        raise ServeError(f"--variants: unknown {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    return list(dict.fromkeys(names))


def parse_guards(items: list[str] | None) -> dict[str, float]:
    if not items:
        return dict(DEFAULT_GUARDS)
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ServeError(f"--guard {item!r}: write METRIC=ALLOWED_DROP, e.g. preference_accuracy=0.05") from None
        if not eq:
            raise ServeError(f"--guard {item!r}: write METRIC=ALLOWED_DROP")
    return out


def _speed(v: Variant) -> str:
    return (f"{v.variant}: {v.bytes / 1e6:.1f} MB, {v.tokens_per_s:.1f} tokens/s batched, "
            f"p50 {v.latency_p50_ms:.0f} ms per request")


def export(run_ref: str, *, variants: list[str], out: str | None = None, gate: bool = True,
           store: str | None = None, wait: float = 10.0, margin: float = DEFAULT_MARGIN,
           guards: dict[str, float] | None = None, sets: list[str] | None = None,
           bench_tokens: int = 16, threads: int | None = None) -> tuple[Path, list[Variant]]:
    """Write merged + variants under `out`, measure them, gate the variants, record every row.

    `threads` sets torch's CPU threads for the whole export (on a shared machine, fewer
    threads than cores avoids the spinning that makes CPU speed figures meaningless)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    from signals.store import default_db
    from signals.store import store as open_store
    from train.rundir import RunError, read_run

    store = str(store or default_db())
    try:
        run = read_run(resolve_run_dir(run_ref, store, wait))
    except RunError as e:
        raise ServeError(str(e)) from None
    out_dir = Path(out) if out else Path(run.run_dir) / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    model_cfg = _model_cfg(run)
    rows: list[Variant] = []

    _log(f"run {run.run_id}: writing the merged model to {out_dir / 'merged'}")
    merged = write_merged(run, out_dir, model_cfg)
    total, weights = folder_bytes(merged)
    _log("measuring merged")
    rows.append(Variant(run_id=run.run_id, variant="merged", decision="reference", path=str(merged.resolve()),
                        format="safetensors " + str(model_cfg.get("dtype", "float32")), bytes=total,
                        weight_bytes=weights, **bench(merged, model_cfg, max_new_tokens=bench_tokens)))
    _log(_speed(rows[-1]))

    cfg = None
    if gate and variants:
        cfg = eval_config(store, merged, margin=margin, guards=guards or DEFAULT_GUARDS, sets=sets or [],
                          model_cfg=model_cfg)
    for name in variants:
        vid = f"{run.run_id}-{name}"
        _log(f"{name}: quantizing")
        try:
            vdir, label, qdict = write_variant(run, merged, out_dir, name)
        except Exception as e:  # noqa: BLE001 - a variant torchao cannot write is skipped, with the reason
            _log(f"{name}: skipped ({type(e).__name__}: {e})")
            rows.append(Variant(run_id=run.run_id, variant=name, decision="skipped", variant_run_id=vid,
                                reasons=[f"quantization failed: {type(e).__name__}: {e}"]))
            continue
        total, weights = folder_bytes(vdir / "model")
        _log(f"{name}: measuring")
        v = Variant(run_id=run.run_id, variant=name, decision="unevaluated", variant_run_id=vid,
                    path=str((vdir / "model").resolve()), format=label, quantization=qdict, bytes=total,
                    weight_bytes=weights, **bench(vdir / "model", model_cfg, max_new_tokens=bench_tokens))
        _log(_speed(v))
        if cfg is not None:
            _log(f"{name}: evaluating against merged (non-inferiority gate)")
            g = gate_variant(cfg, vdir, store)
            v.decision, v.reasons, v.eval_id = g["decision"], list(g["reasons"]), g["eval_id"]
        else:
            v.reasons = ["--no-eval: not gated; not servable until evaluated"]
        rows.append(v)

    with open_store(store, wait=wait) as con:
        for v in rows:
            record_variant(con, v)
        recorded = list_variants(con, run.run_id)
    summary = {"run_id": run.run_id, "run_dir": str(run.run_dir), "out": str(out_dir.resolve()),
               "gate": {"primary": "sft_loglik", "margin": -float(margin), "guards": guards or DEFAULT_GUARDS}
               if cfg is not None else None,
               "variants": [{k: v for k, v in r.items() if k != "created_at"} for r in recorded
                            if r["variant"] in {x.variant for x in rows}]}
    (out_dir / "export.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return out_dir, rows


def format_table(run_id: str, out: Path, rows: list[Variant]) -> str:
    ref = next((r.bytes for r in rows if r.variant == "merged" and r.bytes), None)
    lines = [f"run {run_id} -> {out}",
             f"{'variant':8} {'size MB':>9} {'vs merged':>9} {'tokens/s':>9} {'p50 ms':>8}  {'decision':13} path"]
    for r in rows:
        size = f"{r.bytes / 1e6:9.1f}" if r.bytes else f"{'-':>9}"
        ratio = f"{r.bytes / ref:8.2f}x" if r.bytes and ref else f"{'-':>9}"
        tps = f"{r.tokens_per_s:9.1f}" if r.tokens_per_s else f"{'-':>9}"
        p50 = f"{r.latency_p50_ms:8.0f}" if r.latency_p50_ms else f"{'-':>8}"
        lines.append(f"{r.variant:8} {size} {ratio} {tps} {p50}  {r.decision:13} {r.path or ''}")
    for r in rows:
        for reason in r.reasons:
            lines.append(f"  {r.variant}: {reason}")
    lines.append("servable: merged" + "".join(f", {r.variant}" for r in rows if r.decision == "promote")
                 + " (decision promote = passed the non-inferiority gate against merged)")
    return "\n".join(lines)


def export_run(args) -> int:
    """The `python -m serve export` verb."""
    out, rows = export(args.run, variants=parse_variants(args.variants), out=args.out, gate=not args.no_eval,
                       store=args.store, wait=getattr(args, "wait", 10.0),
                       margin=getattr(args, "margin", DEFAULT_MARGIN),
                       guards=parse_guards(getattr(args, "guard", None)), sets=getattr(args, "set", None) or [],
                       bench_tokens=getattr(args, "bench_tokens", 16), threads=getattr(args, "threads", None))
    print(format_table(rows[0].run_id, out, rows))
    return 0
