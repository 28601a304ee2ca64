"""`python -m scripts results`: run the real-data exps here and regenerate docs/results.md.

    python -m scripts results                          # all five, one after another (make results)
    python -m scripts results --exps hh-rlhf,mlqe-pe   # a subset: the other exps' sections are kept
    python -m scripts results +hw=gpu                  # overrides go to every exp (conf/hw/gpu.yaml)

Per exp, in this process: the stage chain `python -m train` runs (ingest, build, train,
eval: the gate's decision is recorded in the exp's store; no promote, so a results run
moves no alias) on a new run directory, then `eval calibrate` of the exp's judge on the
same snapshot's held-out user verdicts (`eval.calibration.models=[]`: the log-probability
margin's agreement with the users is the preference_accuracy row the eval already scored).
Each exp's figures are kept in the page as JSON in an HTML comment, so a subset run
rewrites its own sections and keeps the others; a GPU run (CUDA visible) adds its own
rows beside the CPU ones. Every figure on the page is one this command measured.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import re
import time
from datetime import UTC, datetime
from pathlib import Path

# short name (the data) -> exp in conf/exp/; the page lists them in this order
EXPS = {"hh-rlhf": "dpo_lora_smollm2_hh-rlhf", "finegrained-qa": "dpo_lora_smollm2_finegrained-qa",
        "defacto": "dpo_lora_smollm2_defacto", "mlqe-pe": "sft_lora_smollm2_mlqe-pe",
        "mlqe-da": "kto_lora_smollm2_mlqe-da"}
STAGES = ["ingest", "build", "train", "eval"]
RECORD = re.compile(r"<!-- results-record (.*?) -->")
BUDGET_S = 15 * 60          # issue 17: each exp (build, train, eval, gate) within 15 minutes on CPU


# ----------------------------------------------------------------------------- running


def machine() -> dict:
    """What the figures were measured on (the wall times mean nothing without it)."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "unknown CPU")
    mem = next((int(line.split()[1]) / 2**20 for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), None)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1) if mem else None, "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def settings(cfg) -> dict:
    """The sizes that decide the wall time: model, steps, length, batch of each method, eval caps."""
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    size = ("max_steps", "per_device_train_batch_size", "max_length", "learning_rate")
    methods = [{"name": c["method"]["name"], **{k: c["method"]["args"].get(k) for k in size}}]
    methods += [{"name": v["name"], **{k: v["args"].get(k) for k in size}} for v in (c.get("then") or {}).values()]
    ev = c["eval"]
    return {"model": c["model"]["name_or_path"], "peft": (c.get("peft") or {}).get("r"), "methods": methods,
            "eval": {"metrics": ev.get("metrics"), "max_examples": ev.get("max_examples"),
                     "max_length": ev.get("max_length")},
            "gate": {k: c["gate"].get(k) for k in ("primary", "margin", "min_eval_size", "guards")}}


def run_exp(short: str, exp: str, overrides: list[str], say=print) -> dict:
    """Build, train, evaluate and gate one exp, then calibrate its judge; the page's record of it."""
    from scripts import stages as chain
    from scripts.config import compose
    from train.config import validate
    from train.rundir import fix_run_dir

    started, t0 = datetime.now(UTC), time.monotonic()
    rec = {"data": short, "exp": exp, "overrides": overrides, "started": started.isoformat(timespec="seconds"),
           "load_avg": [round(x, 2) for x in os.getloadavg()], "seconds": {}, "machine": machine()}
    rec["device"] = "gpu" if rec["machine"]["gpu"] else "cpu"

    def report(stage, status, at, **fields):
        rec["seconds"][stage] = round(time.monotonic() - at, 1)
        say(f"results: {short}: {stage} {status} in {rec['seconds'][stage]:.1f} s"
            + (f" ({fields['error']})" if "error" in fields else ""))
        return fields

    try:
        cfg = compose([f"+exp={exp}", "resume=false", *overrides])
        validate(cfg)
        cfg, _ = fix_run_dir(cfg)
        rec["settings"], rec["run"] = settings(cfg), str(cfg.run_dir)
        ctx = chain.Context(cfg, log=report)
        try:
            chain.run(ctx, STAGES)
        finally:
            if ctx.snapshot is not None:
                rec["snapshot"] = {"version": ctx.snapshot.version, "counts": ctx.snapshot.manifest.get("counts")}
        r = ctx.result
        rec["result"] = {k: r.get(k) for k in ("decision", "reasons", "notes", "primary", "guards", "metrics",
                                               "power", "baseline", "eval_id", "confidence")}
        rec["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - a failed exp is a row of the page, with its reason
        rec["status"], rec["error"] = "failed", f"{type(e).__name__}: {e}"
        say(f"results: {short}: failed: {rec['error']}")
    if rec.get("snapshot"):
        t = time.monotonic()
        rec["calibration"] = calibrate(exp, rec["snapshot"]["version"], overrides)
        rec["seconds"]["calibrate"] = round(time.monotonic() - t, 1)
    rec["seconds"]["total"] = round(time.monotonic() - t0, 1)
    rec["methods"], rec["load_avg_end"] = method_seconds(rec.get("run")), [round(x, 2) for x in os.getloadavg()]
    gc.collect()
    say(f"results: {short}: {rec.get('result', {}).get('decision', rec['status'])} "
        f"in {rec['seconds']['total'] / 60:.1f} min")
    return rec


def method_seconds(run: str | None) -> list[dict]:
    """Per trained method: its training seconds and TRL's scoring of the held-out split after it
    (train/runner.py evaluates whenever the split has rows): both are in the train stage's time."""
    out = []
    for done in sorted(Path(run).glob("stages/*/done.json")) if run else []:
        d = json.loads(done.read_text())
        m = d.get("metrics") or {}
        out.append({"method": d.get("method"), "train_s": m.get("train_wall_s"), "trl_eval_s": m.get("eval_runtime")})
    return out


def calibrate(exp: str, version: str, overrides: list[str]) -> dict:
    """The exp's judge(s) scored against the users' held-out verdicts (recorded in its store)."""
    from eval.calibrate import ALL_APPS
    from eval.calibrate import calibrate as run
    from scripts.config import compose

    try:
        out = run(compose([f"+exp={exp}", *overrides, f"snapshot={version}", "eval.calibration.models=[]"]))
    except Exception as e:  # noqa: BLE001 - e.g. ratings only: no pairs to agree on
        return {"error": f"{type(e).__name__}: {e}"}
    keep = ("predictor", "n", "agreement", "ci_low", "ci_high", "kappa", "position_bias", "ece", "auc")
    return {"calibration_id": out["calibration_id"], "pairs": out["pairs"], "kto_rows": out["kto_rows"],
            "rows": [{k: r.get(k) for k in keep} for r in out["rows"] if r["app"] == ALL_APPS]}


# ----------------------------------------------------------------------------- the page


def read_records(page: Path) -> dict[str, dict]:
    """{key: record} kept in an existing page (key: data@device)."""
    if not page.is_file():
        return {}
    recs = [json.loads(m) for m in RECORD.findall(page.read_text())]
    return {key(r): r for r in recs}


def key(rec: dict) -> str:
    return f"{rec['data']}@{rec.get('device', 'cpu')}"


def _f(x, fmt: str = "{:.3f}") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _ci(m: dict) -> str:
    return f"[{_f(m['ci_low'], '{:+.3f}')}, {_f(m['ci_high'], '{:+.3f}')}]"


def why(rec: dict) -> str:
    """One sentence: why the gate decided what it did, in terms of the primary metric's MDE."""
    if rec["status"] != "ok":
        return f"The run failed: {rec['error']}."
    r = rec["result"]
    m = (r.get("metrics") or {}).get(r.get("primary"))
    if r["decision"] == "promote":
        return f"The lower bound of {r['primary']} clears the margin and no guard regressed."
    if m is None:
        return "The primary metric was not computed: " + "; ".join(r["reasons"])
    diff, mde, n = m["diff"], m["mde"], m["n"]
    others = [x for x in r["reasons"] if not x.startswith(f"{r['primary']}:")
              and ("cannot rule out" in x or "below min_eval_size" in x or "not computed" in x or "NaN" in x)]
    also = f" Also: {'; '.join(others)}." if others else ""
    failed = [x for x in r["reasons"] if "regressed by more" in x or "upper bound is below" in x]
    if r["decision"] == "reject":
        return "Rejected: " + "; ".join(failed or r["reasons"]) + "."
    if not math.isfinite(diff) or not math.isfinite(mde):
        return "Inconclusive: " + "; ".join(r["reasons"]) + "."
    if abs(diff) < mde:
        need = f"; an effect of this size would need about n={math.ceil(n * (mde / abs(diff)) ** 2)}" if diff else ""
        return (f"Inconclusive: the observed {r['primary']} difference {diff:+.3f} is smaller than the MDE "
                f"{mde:.3f} that n={n} held-out examples can detect (80% power, 95% confidence), so this eval "
                f"cannot tell it from no change{need}.{also}")
    unsure = [x for x in r["reasons"] if "cannot rule out" in x or "below min_eval_size" in x or "includes" in x]
    return "Inconclusive: " + "; ".join(unsure or r["reasons"]) + "."


def _minutes(s) -> str:
    return f"{s / 60:.1f} min" if s is not None else "–"


def summary_row(short: str, rec: dict | None) -> str:
    if rec is None:
        return f"| {short} | {EXPS.get(short, short)} | not run | | | | | | | |"
    if rec["status"] != "ok":
        return (f"| {short} | {rec['exp']} | {rec.get('device', 'cpu')} | – | – | – | – | – | failed | "
                f"{_minutes(rec['seconds'].get('total'))} |")
    r = rec["result"]
    m = r["metrics"].get(r["primary"]) or {}
    return (f"| {short} | {rec['exp']} | {rec.get('device', 'cpu')} | {r['primary']} | {_f(m.get('baseline'))} | "
            f"{_f(m.get('candidate'))} | {_f(m.get('diff'), '{:+.3f}')} {_ci(m) if m else ''} | {_f(m.get('mde'))} "
            f"(n={m.get('n', '–')}) | **{r['decision']}** | {_minutes(rec['seconds'].get('total'))} |")


def section(rec: dict) -> list[str]:
    s, mach = rec.get("settings") or {}, rec["machine"]
    where = mach["gpu"] or f"{mach['cores']} CPU cores"
    out = [f"## {rec['data']} ({rec.get('device', 'cpu')})", "",
           f"`{rec['exp']}` on {where}, started {rec['started']} (1-minute load average {rec['load_avg'][0]:.2f} at "
           f"the start{_end_load(rec)}: the machine is shared with other jobs)."]
    if s:
        meth = "; ".join(f"{m['name']}: {m['max_steps']} steps of {m['per_device_train_batch_size']} at "
                         f"{m['max_length']} tokens, lr {m['learning_rate']:g}" for m in s["methods"])
        ev = s["eval"]
        lora = f"LoRA r={s['peft']}" if s["peft"] else "full weights"
        out += ["", f"Settings: {s['model']}, {lora}; {meth}. Eval: {', '.join(ev['metrics'] or [])}, "
                f"at most {ev['max_examples'] or 'all'} examples per split at {ev['max_length']} tokens. "
                f"Gate: primary {s['gate']['primary']} (margin {s['gate']['margin']}), guards "
                f"{s['gate']['guards'] or 'none'}, min_eval_size {s['gate']['min_eval_size']}."]
    snap = rec.get("snapshot")
    if snap:
        counts = ", ".join(f"{k} {v['train']}/{v['eval']}" for k, v in (snap.get("counts") or {}).items())
        out += ["", f"Snapshot `{snap['version']}` (train/eval rows: {counts}); run `{rec.get('run')}`."]
    if rec["status"] == "ok":
        r = rec["result"]
        out += ["", "| metric | n | baseline | candidate | diff | 95% CI | MDE |", "|---|---:|---:|---:|---:|---|---:|"]
        for name, m in r["metrics"].items():
            if name.startswith("latency") or name in ("tokens_per_s", "peak_memory_mb"):
                continue
            mark = " (primary)" if name == r["primary"] else " (guard)" if name in (r.get("guards") or {}) else ""
            out.append(f"| {name}{mark} | {m['n']} | {_f(m['baseline'])} | {_f(m['candidate'])} | "
                       f"{_f(m['diff'], '{:+.3f}')} | {_ci(m)} | {_f(m['mde'])} |")
        out += ["", f"Decision: **{r['decision'].upper()}**. {why(rec)}", "", "Gate reasons:", ""]
        out += [f"- {x}" for x in r["reasons"]]
        out += [f"- note: {x}" for x in r.get("notes") or []]
    else:
        out += ["", f"Decision: **failed**. {why(rec)}"]
    stages = {"eval": "eval and gate"}
    out += ["", *judges(rec), "", "Wall time: " + ", ".join(f"{stages.get(k, k)} {v:.0f} s"
                                                         for k, v in rec["seconds"].items() if k != "total")
            + f"; total **{_minutes(rec['seconds'].get('total'))}**"
            + ("" if rec.get("device") == "gpu" or rec["seconds"].get("total", 0) <= BUDGET_S
               else " (over the 15-minute budget)") + "."
            + _split(rec.get("methods") or method_seconds(rec.get("run")))]
    return out


def _end_load(rec: dict) -> str:
    end = rec.get("load_avg_end")
    return f", {end[0]:.2f} at the end, {end[1]:.2f} over its last 5 minutes" if end else ""


def _split(methods: list[dict]) -> str:
    parts = [f"{m['method']} {m['train_s']:.0f} s training" + (f" + {m['trl_eval_s']:.0f} s TRL's held-out eval"
                                                              if m.get("trl_eval_s") else "")
             for m in methods if m.get("train_s") is not None]
    return f" The train stage: {'; '.join(parts)}." if parts else ""


def judges(rec: dict) -> list[str]:
    """Each judge's agreement with the users, and the log-prob margin's (the preference_accuracy rows)."""
    cal = rec.get("calibration") or {}
    if cal.get("error"):
        return [f"Judges against the users: not calibrated ({cal['error']})."]
    rows = [(r["predictor"], r) for r in cal.get("rows") or []]
    metrics = (rec.get("result") or {}).get("metrics") or {}
    pa = metrics.get("preference_accuracy")
    if not rows and pa is None:
        return ["Judges against the users: none measured."]
    out = [f"Judges against the users' held-out verdicts ({cal.get('pairs', '–')} pairs; `eval calibrate`, "
           f"{cal.get('calibration_id', 'not run')}):", "",
           "| predictor | n | agreement | 95% CI | kappa | position bias |", "|---|---:|---:|---|---:|---:|"]
    for name, r in rows:
        out.append(f"| {name} | {r['n']} | {_f(r['agreement'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] | "
                   f"{_f(r['kappa'])} | {_f(r['position_bias'])} |")
    if pa is not None:
        from eval.metrics import wilson

        for side in ("baseline", "candidate"):
            lo, hi = wilson(pa[side], pa["n"], 0.95)
            out.append(f"| log-prob margin, {side} (= its preference_accuracy) | {pa['n']} | {_f(pa[side])} | "
                       f"[{_f(lo)}, {_f(hi)}] | – | – |")
    return out


def render(records: dict[str, dict], command: str) -> str:
    """The whole page from the records, one section per exp and device."""
    keys = [k for short in EXPS for k in sorted(records) if k.split("@")[0] == short]
    keys += [k for k in sorted(records) if k not in keys]
    machines = {json.dumps(records[k]["machine"], sort_keys=True): records[k]["machine"] for k in keys}
    lines = ["# Results on real data", "",
             "Generated by `make results` (`python -m scripts results`, [scripts/results.py](../scripts/results.py));",
             f"last written by `{command}`. Do not edit by hand: the next run rewrites it. Each exp is",
             "built, trained, evaluated and gated on this machine, then its judge is scored against the users'",
             "held-out verdicts; the settings (CPU here, GPU one override away) are described in",
             "[real-data.md](real-data.md#cpu-and-gpu-settings). Intervals are 95%; MDE is the smallest difference",
             "the eval split detects with 80% power ([eval.md](eval.md)). An inconclusive or reject decision is a",
             "result: each section says why.", "", "Machines:", ""]
    lines += [f"- {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB" + (f", {m['gpu']}" if m["gpu"] else ", no GPU")
              + f"; torch {m['torch']}, Python {m['python']}" for m in machines.values()]
    lines += ["", "| data | exp | device | primary metric | baseline | candidate | diff [95% CI] | MDE (n) | decision "
              "| wall time |", "|---|---|---|---|---:|---:|---|---|---|---:|"]
    shown = set()
    for short in EXPS:
        mine = [k for k in keys if k.split("@")[0] == short]
        lines += [summary_row(short, records[k]) for k in mine] or [summary_row(short, None)]
        shown |= set(mine)
    lines += [summary_row(records[k]["data"], records[k]) for k in keys if k not in shown]
    for k in keys:
        lines += ["", *section(records[k]), "",
                  "<!-- results-record " + json.dumps(records[k], default=str).replace(">", "\\u003e") + " -->"]
    return "\n".join(lines) + "\n"


def resolve(names: str | None) -> list[tuple[str, str]]:
    """(short, exp) for `--exps` (short names or exp names; default: all five)."""
    if not names:
        return list(EXPS.items())
    out = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        exp = EXPS.get(n, n)
        short = next((s for s, e in EXPS.items() if e == exp), n)
        out.append((short, exp))
    return out


def results(args) -> int:
    """Run the real-data exps (or `--exps`) here and rewrite the results page with their figures."""
    page = Path(args.out)
    records = read_records(page)
    command = " ".join(["python -m scripts results", *(["--exps", args.exps] if args.exps else []), *args.overrides])
    ok = True
    for short, exp in resolve(args.exps):
        rec = run_exp(short, exp, list(args.overrides))
        records[key(rec)] = rec
        ok = ok and rec["status"] == "ok"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render(records, command))
        print(f"results: wrote {page}", flush=True)
    return 0 if ok else 1


def add_arguments(p) -> None:
    p.add_argument("--exps", default=None, metavar="A,B",
                   help=f"comma-separated data or exp names (default: all of {', '.join(EXPS)})")
    p.add_argument("--out", default="docs/results.md", help="the page to rewrite (default docs/results.md)")
