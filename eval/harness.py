"""Evaluate a candidate run against the baseline on held-out signal, gate, record.

    from eval.harness import evaluate
    result = evaluate(cfg, "runs/dpo_lora_tiny/20260101-120000")   # cfg: composed root config
    result["decision"]   # promote | reject | inconclusive

Order: read the run and its snapshot's eval splits; for the baseline, then the
candidate (one model in memory at a time, same tokenizer template, batch size and
decoding): score preference pairs, SFT completions and KTO completions, generate
answers (in process, or through `eval.engine.url`) and time the first
`eval.latency.prompts` of them (eval/latency.py); judge the answers pairwise; compute
paired metrics with bootstrap intervals; apply the gate; write per-example Parquet under
`{run_dir}/eval/{eval_id}/`; record runs, eval_results and decisions in the store's
registry, the one record of every decision. Moving `production` is the next stage
(`eval.registry.promote_if_allowed`), run by the stage chain and `python -m eval run`.

Bad input (missing run, empty split a gated metric needs, NaN score, a model that
cannot load) raises EvalError after recording an `inconclusive` decision.
"""

from __future__ import annotations

import gc
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from eval import EvalError
from eval.data import check_finite, open_snapshot, read_split
from eval.gate import decide
from eval.metrics import Bootstrap, against_constant, kto_auc, paired_mean
from eval.runs import Run, load_model, load_run_model, read_run

# Which snapshot split each metric reads; the gate needs the split of every gated metric.
METRIC_SPLIT = {
    "preference_accuracy": "pref", "preference_accuracy_norm": "pref",
    "preference_margin": "pref", "preference_margin_norm": "pref",
    "sft_loglik": "sft", "kto_auc": "kto", "winrate": "gen", "judge_score": "gen",
}
GROUP_SPLIT = {"preference": "pref", "likelihood": "sft", "kto": "kto", "winrate": "gen"}


def _plain(node) -> dict:
    """A config node (OmegaConf or dict) as a plain, resolved dict."""
    if node is None:
        return {}
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(node):
            return OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(node)


def _store(path):
    """A short write connection to the store (waits for another writer; never held while scoring)."""
    from signals.store import store

    return store(path)


def evaluate(cfg, run_dir: str | Path) -> dict:
    """Contract 2: score `run_dir` against the baseline, gate it, record it; the decision dict."""
    ecfg, gcfg = _plain(cfg.get("eval")), _plain(cfg.get("gate"))
    reg = ecfg.get("registry") or {}
    record = bool(reg.get("record", True))
    store = cfg.get("store")
    run = read_run(run_dir)
    eval_id = f"{run.run_id}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    taint = None
    if record:
        from eval.registry import register_run, tainted

        with _store(store) as con:
            register_run(con, run)
            taint = tainted(con, run.run_id)[1]
    try:
        if taint:
            raise EvalError(f"run {run.run_id} is tainted ({taint}); it is not evaluated")
        result = _evaluate(cfg, ecfg, gcfg, run, eval_id, store)
    except Exception as e:              # anything that stops the evaluation: recorded, never promote
        from signals.secrets import from_env, scrub

        msg = str(e) if isinstance(e, EvalError) else f"{type(e).__name__}: {e}"
        # recorded and shown on the dashboard: never with a key an endpoint echoed
        msg = scrub(msg, known=from_env((ecfg.get("judge") or {}).get("api_key_env"),
                                        (ecfg.get("engine") or {}).get("api_key_env")))
        decision = decide({}, gcfg, error=msg)
        if record:
            from eval.registry import record_evaluation

            with _store(store) as con:
                record_evaluation(con, eval_id=eval_id, run_id=run.run_id, metrics=[], decision=decision,
                                  gate_config=gcfg, eval_config=ecfg, baseline=str(ecfg.get("baseline")),
                                  snapshot_version=run.snapshot_version, examples_dir=None)
        raise
    metrics = result.pop("_metrics")
    if record:
        from eval.registry import record_evaluation

        with _store(store) as con:
            record_evaluation(con, eval_id=eval_id, run_id=run.run_id, metrics=metrics, decision=result,
                              gate_config=gcfg, eval_config=ecfg, baseline=result["baseline"],
                              snapshot_version=result["snapshot_version"],
                              examples_dir=result["examples_dir"])
    if reg.get("mlflow"):
        from eval.tracking import log_to_mlflow

        log_to_mlflow(run, result, metrics)
    return result


def _snapshot_path(cfg, ecfg, run: Run) -> Path:
    if ecfg.get("snapshot"):
        return Path(ecfg["snapshot"])
    if run.snapshot_path:
        return Path(run.snapshot_path)
    if run.snapshot_version:
        return Path(cfg.get("snapshot_root", "data/snapshots")) / run.snapshot_version
    raise EvalError(f"{run.run_dir}/manifest.json: no snapshot_path or snapshot_version, and eval.snapshot is not set")


def _gated_splits(gcfg) -> dict[str, str]:
    """{split: metric} for every metric the gate reads."""
    out = {}
    for name in [gcfg.get("primary"), *(gcfg.get("guards") or {})]:
        if name:
            if name not in METRIC_SPLIT:
                raise EvalError(f"gate: unknown metric {name!r}; known: {', '.join(METRIC_SPLIT)}")
            out.setdefault(METRIC_SPLIT[name], name)
    return out


def _load_splits(snapshot, ecfg, gcfg) -> tuple[dict, list[str]]:
    groups = list(ecfg.get("metrics") or GROUP_SPLIT)
    unknown = [g for g in groups if g not in GROUP_SPLIT]
    if unknown:
        raise EvalError(f"eval.metrics: unknown {unknown}; choose from {list(GROUP_SPLIT)}")
    gated = _gated_splits(gcfg)
    for split, metric in gated.items():
        group = next(g for g, s in GROUP_SPLIT.items() if s == split)
        if group not in groups:
            raise EvalError(f"gate metric {metric!r} needs eval.metrics to include {group!r}")
    cap = ecfg.get("max_examples")
    gen = ecfg.get("generation") or {}
    splits, notes = {}, []
    for group in groups:
        split = GROUP_SPLIT[group]
        if split == "gen":
            src = gen.get("split", "sft")
            rows = read_split(snapshot, src, "eval", gen.get("max_prompts", 64))
            rows = [r for r in rows if r["prompt"]]
            file = snapshot.path / src / "eval.parquet"
        else:
            rows = read_split(snapshot, split, "eval", cap)
            file = snapshot.path / split / "eval.parquet"
        if not rows:
            if split in gated:
                raise EvalError(f"empty eval split {file} (snapshot {snapshot.version}): "
                                f"gate metric {gated[split]!r} cannot be computed")
            notes.append(f"{group}: skipped, {file} has no rows")
            continue
        splits[split] = rows
    if not splits:
        raise EvalError(f"snapshot {snapshot.version} at {snapshot.path}: every eval split is empty")
    return splits, notes


def _score_side(model, tok, splits, ecfg, side: str, bar, engine=None, engine_model: str | None = None) -> dict:
    """Per-example scores, answers and latency for one model (the same settings for both
    sides); with an engine, the answers and their timing come from it."""
    from eval.scoring import encode, generate, score_encoded

    bs, ml = int(ecfg.get("batch_size", 16)), ecfg.get("max_length")
    out = {}
    if "pref" in splits:
        rows = splits["pref"]
        enc = encode(tok, [r["prompt"] for r in rows] * 2,
                     [r["chosen"] for r in rows] + [r["rejected"] for r in rows], ml)
        bar.set_postfix_str(f"{side}: pref")
        lp, nt = score_encoded(model, enc, tok.pad_token_id, batch_size=bs)
        bar.update()
        n = len(rows)
        out["pref"] = {"lp_c": lp[:n], "lp_r": lp[n:], "nt_c": nt[:n], "nt_r": nt[n:]}
    for split in ("sft", "kto"):
        if split in splits:
            rows = splits[split]
            enc = encode(tok, [r["prompt"] for r in rows], [r["completion"] for r in rows], ml)
            bar.set_postfix_str(f"{side}: {split}")
            lp, nt = score_encoded(model, enc, tok.pad_token_id, batch_size=bs)
            bar.update()
            out[split] = {"lp": lp, "nt": nt}
    for split, d in out.items():
        ids = [r["interaction_id"] for r in splits[split]]
        for key, arr in d.items():
            if key.startswith("lp"):
                check_finite(arr, f"{side} model, {split} eval split ({key})", ids)
    if "gen" in splits:
        g = dict(ecfg.get("generation") or {})
        prompts = [r["prompt"] for r in splits["gen"]]
        lat = ecfg.get("latency") or {}
        n_lat = min(int(lat.get("prompts", 0) or 0), len(prompts))
        if engine is not None:
            bar.set_postfix_str(f"{side}: generate ({engine.url})")
            out["gen"], timing = engine.answers(engine_model, prompts, g, latency_prompts=n_lat)
            if timing:
                out["latency"] = timing
        else:
            bar.set_postfix_str(f"{side}: generate")
            out["gen"] = generate(model, tok, prompts,
                                  max_new_tokens=g.get("max_new_tokens", 64), do_sample=g.get("do_sample", False),
                                  temperature=g.get("temperature", 1.0), top_p=g.get("top_p", 1.0),
                                  seed=g.get("seed", 0), batch_size=int(g.get("batch_size", bs)),
                                  max_length=ml)
            if n_lat:
                from eval.latency import measure_generate

                bar.set_postfix_str(f"{side}: latency")
                out["latency"] = measure_generate(model, tok, prompts[:n_lat], g, max_length=ml,
                                                  memory_sample_s=lat.get("memory_sample_s", 0.005))
        bar.update()
    return out


def _resolve_baseline(cfg, ecfg, run: Run, store):
    """(label, loader, path): eval.baseline, 'production' (the current alias), or the run's
    base model; path is what an engine is asked for (production's served folder)."""
    spec = ecfg.get("baseline")
    if spec == "production":
        from eval.registry import alias_target

        with _store(store) as con:
            target = alias_target(con)
            row = con.execute("SELECT run_dir FROM runs WHERE run_id = ?", [target]).fetchone() if target else None
        if not row:
            raise EvalError("eval.baseline=production, but no run is in production yet")
        prod = read_run(row[0])
        return (f"production:{prod.run_id}", lambda tmpl: load_run_model(prod, cfg.get("model")),
                str(prod.serve_path))
    name = spec or run.base_model or (cfg.get("model") or {}).get("name_or_path")
    if not name:
        raise EvalError("no baseline: set eval.baseline (or baseline=MODEL) or base_model in the run manifest")
    return str(name), lambda tmpl: load_model(str(name), cfg.get("model"), what="baseline",
                                              chat_template=tmpl), str(name)


def _check_latency(ecfg, gcfg) -> None:
    """A latency limit in the gate needs the figures measured: fail before any compute."""
    from eval.gate import latency_limits

    try:
        limits = latency_limits(gcfg)
    except ValueError as e:
        raise EvalError(str(e)) from None
    if not limits:
        return
    groups = list(ecfg.get("metrics") or GROUP_SPLIT)
    if "winrate" not in groups:
        raise EvalError(f"gate.latency {sorted(limits)} needs eval.metrics to include 'winrate' (its prompts are timed)")
    if not int((ecfg.get("latency") or {}).get("prompts", 0) or 0):
        raise EvalError(f"gate.latency {sorted(limits)} needs eval.latency.prompts > 0")
    if "max_peak_memory_ratio" in limits and (ecfg.get("engine") or {}).get("url"):
        raise EvalError("gate.latency.max_peak_memory_ratio: peak memory is not measured through eval.engine.url")


def _judge_calibration(ecfg, gcfg, store) -> dict | None:
    """The configured judge's latest calibration when gate.judge asks for one (else None)."""
    from eval.gate import judge_gated

    if not judge_gated(gcfg) or not store or not Path(str(store)).is_file():
        return None
    from eval.judges import judge_key
    from eval.registry import latest_calibration
    from signals.store import store as open_store

    with open_store(str(store), read_only=True) as con:
        return latest_calibration(con, judge_key(ecfg.get("judge")))


def _device(spec: str | None) -> str:
    """`auto` -> cuda when available, else cpu; anything else is passed to torch as is."""
    if spec in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(spec)


def _evaluate(cfg, ecfg, gcfg, run: Run, eval_id: str, store) -> dict:
    snapshot = open_snapshot(_snapshot_path(cfg, ecfg, run), store, run.run_id)
    splits, notes = _load_splits(snapshot, ecfg, gcfg)
    boot = Bootstrap.from_cfg(ecfg.get("bootstrap"))
    label, load_baseline, baseline_path = _resolve_baseline(cfg, ecfg, run, store)
    _check_latency(ecfg, gcfg)
    calibration = _judge_calibration(ecfg, gcfg, store)

    device = _device(ecfg.get("device", "auto"))
    judge = engine = None
    eng = ecfg.get("engine") or {}
    if "gen" in splits and eng.get("url"):
        from eval.latency import Engine

        engine = Engine(str(eng["url"]), timeout_s=eng.get("timeout_s", 300.0),
                        concurrency=eng.get("concurrency", 4), api_key_env=eng.get("api_key_env"))
    if "gen" in splits:                           # fail on a bad judge before spending compute
        from eval.judges import build_judge

        try:
            judge = build_judge({**(ecfg.get("judge") or {}), "device": device}, store)
        except BaseException:
            if engine is not None:
                engine.close()
            raise
    from tqdm.auto import tqdm

    from train.console import quiet

    bar = tqdm(total=2 * len(splits), desc="eval", unit="split", disable=quiet(), leave=False)
    try:
        cand_model, cand_tok = load_run_model(run, cfg.get("model"))
        template = cand_tok.chat_template
        cand = _score_side(cand_model.to(device), cand_tok, splits, ecfg, "candidate", bar, engine,
                           eng.get("candidate_model") or str(run.serve_path))
        del cand_model
        gc.collect()
        base_model, base_tok = load_baseline(template)
        base = _score_side(base_model.to(device), base_tok, splits, ecfg, "baseline", bar, engine,
                           eng.get("baseline_model") or baseline_path)
        del base_model
        gc.collect()
        outcomes = judge.compare(splits["gen"], cand["gen"], base["gen"]) if judge else None
    finally:
        bar.close()
        if judge is not None:
            judge.close()
        if engine is not None:
            engine.close()

    metrics, tables = _metrics(splits, base, cand, outcomes, boot, ecfg)
    by_name = {m.name: m for m in metrics}
    decision = decide(by_name, gcfg, calibration=calibration)
    if "gen" not in splits and int((ecfg.get("latency") or {}).get("prompts", 0) or 0):
        notes.append("latency: not measured (it times the winrate group's prompts)")
    if "gen" in splits:
        empty = _empty_answers(base["gen"], cand["gen"], ecfg)
        notes += empty
        if empty and "winrate" in decision.get("checks", {}):
            decision["reasons"] += empty
    examples_dir = Path(run.run_dir) / "eval" / eval_id
    _write_examples(examples_dir, tables, eval_id, run.run_id)
    return {**decision, "eval_id": eval_id, "run_id": run.run_id, "baseline": label,
            "snapshot_version": snapshot.version, "notes": notes, "promoted": False,
            "primary": gcfg.get("primary"), "guards": dict(gcfg.get("guards") or {}),
            "confidence": boot.confidence, "power": _power(gcfg, by_name, boot),
            "metrics": {m.name: m.as_dict() for m in metrics}, "examples_dir": str(examples_dir),
            "_metrics": metrics}


def _power(gcfg, by_name: dict, boot: Bootstrap) -> dict | None:
    """signals.power's report for the primary metric, its sd taken from this evaluation's
    interval (SE x sqrt(n)): the eval size `gate.power.effect` needs on data like this."""
    import math

    from signals.power import report, z_sum

    primary = gcfg.get("primary")
    m = by_name.get(primary)
    if m is None or m.n < 1:
        return None
    power = gcfg.get("power") or {}
    sd = m.mde / z_sum(boot.confidence, boot.power) * math.sqrt(m.n) if math.isfinite(m.mde) else power.get("sd")
    return report(primary, m.n, effect=power.get("effect"), sd=sd, confidence=boot.confidence, power=boot.power)


def _empty_answers(base_answers: list[str], cand_answers: list[str], ecfg) -> list[str]:
    """Say so when generated answers are empty: a win rate of ties between two empty answers means nothing."""
    out = []
    max_new = (ecfg.get("generation") or {}).get("max_new_tokens", 64)
    for side, answers in (("baseline", base_answers), ("candidate", cand_answers)):
        n = sum(not (a or "").strip() for a in answers)
        if n and n * 2 >= len(answers):
            out.append(f"{side}: {n} of {len(answers)} generated answers are empty; the win rate compares "
                       f"nothing there (check the chat template, eval.generation.max_new_tokens={max_new}, "
                       "or a model that emits its end token at once)")
    return out


def _metrics(splits, base, cand, outcomes, boot, ecfg):
    """Metric rows and per-example tables (one per split) from both sides' scores."""
    metrics, tables = [], {}

    def extras(rows):
        return {k: [r.get(k) for r in rows] for k in ("interaction_id", "app", "task", "origin")}

    if "pref" in splits:
        rows, b, c = splits["pref"], base["pref"], cand["pref"]
        bm, cm = b["lp_c"] - b["lp_r"], c["lp_c"] - c["lp_r"]
        bn = b["lp_c"] / b["nt_c"] - b["lp_r"] / b["nt_r"]
        cn = c["lp_c"] / c["nt_c"] - c["lp_r"] / c["nt_r"]

        def acc(m):
            return np.where(m > 0, 1.0, np.where(m < 0, 0.0, 0.5))

        metrics += [paired_mean("preference_accuracy", acc(bm), acc(cm), boot, bounds=(0, 1)),
                    paired_mean("preference_accuracy_norm", acc(bn), acc(cn), boot, bounds=(0, 1)),
                    paired_mean("preference_margin", bm, cm, boot, unit="nats (sum)"),
                    paired_mean("preference_margin_norm", bn, cn, boot, unit="nats per token")]
        tables["pref"] = {**extras(rows), "chosen_tokens": b["nt_c"], "rejected_tokens": b["nt_r"],
                          "base_logp_chosen": b["lp_c"], "base_logp_rejected": b["lp_r"],
                          "cand_logp_chosen": c["lp_c"], "cand_logp_rejected": c["lp_r"],
                          "base_margin": bm, "cand_margin": cm, "base_margin_norm": bn,
                          "cand_margin_norm": cn}
    if "sft" in splits:
        rows, b, c = splits["sft"], base["sft"], cand["sft"]
        bl, cl = b["lp"] / b["nt"], c["lp"] / c["nt"]
        by_origin = {}
        for o in sorted({str(r.get("origin")) for r in rows}):
            mask = np.array([str(r.get("origin")) == o for r in rows])
            by_origin[o] = {"n": int(mask.sum()), "baseline": float(bl[mask].mean()),
                            "candidate": float(cl[mask].mean())}
        metrics.append(paired_mean("sft_loglik", bl, cl, boot, unit="nats per token", by_origin=by_origin))
        tables["sft"] = {**extras(rows), "tokens": b["nt"], "base_loglik": bl, "cand_loglik": cl}
    if "kto" in splits:
        rows, b, c = splits["kto"], base["kto"], cand["kto"]
        labels = np.array([r["label"] for r in rows])
        bl, cl = b["lp"] / b["nt"], c["lp"] / c["nt"]
        metrics.append(kto_auc(bl, cl, labels, boot))
        tables["kto"] = {**extras(rows), "label": labels, "tokens": b["nt"], "base_loglik": bl,
                         "cand_loglik": cl}
    if outcomes is not None:
        rows = splits["gen"]
        judge = (ecfg.get("judge") or {}).get("name", "rules")
        out = np.array([o["outcome"] for o in outcomes], dtype=np.float64)
        metrics.append(against_constant("winrate", out, 0.5, boot, judge=judge,
                                        wins=int((out == 1).sum()), ties=int((out == 0.5).sum()),
                                        losses=int((out == 0).sum())))
        if all(o["cand_score"] is not None for o in outcomes):
            metrics.append(paired_mean("judge_score", [o["base_score"] for o in outcomes],
                                       [o["cand_score"] for o in outcomes], boot, judge=judge,
                                       bounds=(0, 1) if judge == "rules" else None))   # rules: share of checks
        tables["winrate"] = {**extras(rows),
                             "prompt": [json.dumps(r["prompt"]) for r in rows],
                             "base_answer": base["gen"], "cand_answer": cand["gen"], "outcome": out,
                             "base_score": [o["base_score"] for o in outcomes],
                             "cand_score": [o["cand_score"] for o in outcomes],
                             "judge_details": [o["details"] for o in outcomes]}
    if "latency" in base and "latency" in cand:
        from eval.latency import latency_metrics

        metrics += latency_metrics(base["latency"], cand["latency"])
        b, c = base["latency"], cand["latency"]
        k = min(len(b["ttft_ms"]), len(c["ttft_ms"]))
        tables["latency"] = {**{key: v[:k] for key, v in extras(splits["gen"]).items()},
                             "base_ttft_ms": b["ttft_ms"][:k], "cand_ttft_ms": c["ttft_ms"][:k],
                             "base_total_ms": b["total_ms"][:k], "cand_total_ms": c["total_ms"][:k],
                             "base_tokens": b["tokens"][:k], "cand_tokens": c["tokens"][:k]}
    return metrics, tables


def _write_examples(out: Path, tables: dict, eval_id: str, run_id: str) -> None:
    """{out}/{split}.parquet, one row per example, plus eval_id/run_id columns for joins."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    for split, cols in tables.items():
        n = len(next(iter(cols.values())))
        data = {"eval_id": [eval_id] * n, "run_id": [run_id] * n, "example": list(range(n))}
        for k, v in cols.items():
            data[k] = v.tolist() if isinstance(v, np.ndarray) else list(v)
        pq.write_table(pa.table(data), out / f"{split}.parquet")
