"""`python -m eval VERB [options] [overrides]`: evaluate and gate a candidate, manage the registry.

    python -m eval run +exp=NAME [candidate=RUN_DIR] [baseline=MODEL] [eval.batch_size=32]
    python -m eval calibrate +exp=NAME [eval/judge=reward_model eval.judge.path=RUN_DIR]
    python -m eval registry [--json]
    python -m eval promote RUN [--force --reason TEXT] [--alias A | --skip-live-check]
    python -m eval rollback [--reason TEXT]
    python -m eval dashboard --out dashboard

`run` composes conf/ like `python -m train` (so `eval.*` and `gate.*` overrides work;
`candidate=`, `baseline=`, `snapshot=` are short for `eval.candidate=` ...), evaluates
RUN_DIR or the newest run under `{output_root}/{exp_name}/`, and promotes it when the
gate says so and `gate.auto_promote` is on. `run` is the default verb:
`python -m eval +exp=NAME` is `python -m eval run +exp=NAME`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from signals.cli import Verb, add_store, store_overrides
from signals.cli import main as run_cli

SHORTHANDS = {"candidate": "eval.candidate", "baseline": "eval.baseline", "snapshot": "eval.snapshot"}


def compose(overrides: list[str]):
    """The root config with `candidate=`/`baseline=`/`snapshot=` mapped into `eval.`."""
    import signals.fetch  # noqa: F401  (registers the ${real_data:NAME} resolver the real-data exps use)
    from eval.settings import problems, register_schemas
    from signals.config import ConfigError
    from signals.config import compose as compose_tree
    from signals.recipe import Recipe
    from signals.recipe import register_schema as register_recipe

    mapped = []
    for o in overrides:
        key, eq, value = o.partition("=")
        mapped.append(f"{SHORTHANDS[key]}={value}" if eq and key in SHORTHANDS else o)
    register_recipe()
    register_schemas()
    cfg = compose_tree(mapped, schemas={"data": Recipe})
    found = problems(cfg)
    if found:
        raise ConfigError("; ".join(found))
    return cfg


def latest_run(output_root: str, exp_name: str) -> Path:
    """The newest `{output_root}/{exp_name}/*` holding a manifest.json."""
    from eval import EvalError

    runs = [p.parent for p in Path(output_root, exp_name).glob("*/manifest.json")]
    if not runs:
        raise EvalError(f"no run found under {Path(output_root, exp_name)}/ "
                        "(train one with `python -m train +exp=...` or pass candidate=RUN_DIR)")
    return max(runs, key=lambda p: p.stat().st_mtime)


def run(args) -> int:
    """Evaluate a candidate run against the baseline, apply the gate, promote if it passes.

    Exit 0 when the evaluation completed, whatever the decision (printed with its reasons)."""
    from eval.harness import evaluate
    from eval.registry import promote_if_allowed

    cfg = compose(store_overrides(args))
    candidate = cfg.eval.get("candidate") or latest_run(cfg.output_root, cfg.exp_name)
    result = evaluate(cfg, str(candidate))
    result["promoted"], why = promote_if_allowed(str(cfg.store), result, cfg.gate,
                                                 pointer_dir=cfg.eval.registry.pointer_dir)
    print(format_result(result))
    if not result["promoted"] and result["decision"] == "promote":
        print(f"  ({why})")
    print(f"dashboard: python -m eval dashboard --store {cfg.store}")
    return 0


def format_result(result: dict) -> str:
    from eval.latency import LATENCY_METRICS as LATENCY

    lines = [f"run {result['run_id']} vs baseline {result['baseline']} "
             f"(snapshot {result['snapshot_version']}, eval {result['eval_id']})",
             f"{'metric':26} {'baseline':>10} {'candidate':>10} {'diff':>9} {'CI low':>9} {'CI high':>9} "
             f"{'n':>6} {'MDE':>8}"]
    latency = {k: m for k, m in result["metrics"].items() if k in LATENCY}
    for name, m in result["metrics"].items():
        if name in latency:
            continue
        lines.append(f"{name:26} {m['baseline']:10.4f} {m['candidate']:10.4f} {m['diff']:+9.4f} "
                     f"{m['ci_low']:+9.4f} {m['ci_high']:+9.4f} {m['n']:6d} {m['mde']:8.4f}")
    if latency:
        first = next(iter(latency.values()))["details"]
        lines.append(f"latency on {first.get('prompts')} prompts, one at a time (baseline: {first.get('baseline_source')}; "
                     f"candidate: {first.get('candidate_source')})")
        for name, m in latency.items():
            ratio = m["details"].get("ratio")
            lines.append(f"  {name:24} {m['baseline']:10.1f} {m['candidate']:10.1f}"
                         + (f"  {ratio:.2f}x" if ratio is not None else ""))
    if result.get("power"):
        from signals.power import describe

        lines.append(describe(result["power"]) + " (sd observed here)")
    lines.append(f"decision: {result['decision'].upper()}" + ("  (production moved)" if result.get("promoted") else ""))
    lines += [f"  - {r}" for r in result["reasons"]]
    lines += [f"  note: {n}" for n in result.get("notes", [])]
    lines.append(f"per-example results: {result['examples_dir']}")
    return "\n".join(lines)


def calibrate(args) -> int:
    """Score each judge and offline metric against the users' own verdicts in the eval split;
    record agreement, kappa, position bias, ECE and AUC in the registry."""
    from eval.calibrate import calibrate as run_calibration
    from eval.calibrate import format_calibration

    cfg = compose(store_overrides(args))
    print(format_calibration(run_calibration(cfg)))
    return 0


def _run_args(p) -> None:
    p.add_argument("--store", default=None, metavar="FILE", help="the signal store (the override store=FILE)")


def registry(args) -> int:
    """List registered runs: latest decision, aliases, tainted (revoked snapshot)."""
    from eval.registry import alias_history, list_runs
    from signals.store import default_db, store

    path = args.store or default_db()
    with store(path, read_only=True, wait=args.wait) as con:
        runs, history = list_runs(con), alias_history(con)
    if args.json:
        print(json.dumps({"runs": runs, "aliases": history}, indent=2, default=str))
        return 0
    if not runs:
        print(f"no runs registered in {path} (evaluate one: python -m eval run +exp=NAME --store {path})")
        return 0
    for alias in sorted({h["alias"] for h in history}):
        target = next((r["run_id"] for r in runs if alias in r["aliases"]), None)
        moves = sum(h["alias"] == alias for h in history)
        print(f"{alias} -> {target or '(none)'}  ({moves} moves; --json for the history)")
    print(f"{'run_id':32} {'exp':20} {'method':7} {'decision':13} {'aliases':12} {'TTFT p95 ms (base>cand)':24} "
          "tainted")
    for r in runs:
        taint = f"TAINTED ({r['taint_reason']})" if r["tainted"] else ""
        t = r["latency"].get("latency_ttft_p95_ms")
        ttft = f"{t['baseline']:.1f} > {t['candidate']:.1f}" if t and None not in t.values() else "-"
        print(f"{r['run_id']:32} {str(r['exp_name']):20} {str(r['method']):7} {str(r['decision']):13} "
              f"{','.join(r['aliases']):12} {ttft:24} {taint}")
    return 0


def _registry_args(p) -> None:
    add_store(p)
    p.add_argument("--json", action="store_true", help="print JSON (runs and alias history)")


def promote(args) -> int:
    """Point an alias at RUN (production; the canary where the store verifies live); needs a
    promote decision unless --force."""
    from eval.verify import promote_by_hand
    from signals.store import default_db, store

    path = args.store or default_db()
    if not Path(path).is_file():
        from signals.store import StoreMissing

        raise StoreMissing(f"signal store {path} does not exist: nothing is registered there")
    with store(path, wait=args.wait) as con:
        alias, run_id = promote_by_hand(con, args.run, alias=args.alias, pointer_dir=args.pointer_dir,
                                        force=args.force, reason=args.reason,
                                        skip_live_check=args.skip_live_check)
    print(f"{alias} -> {run_id}" + ("  (the verify stage decides production from live signal)"
                                     if alias == "canary" else ""))
    return 0


def _alias_args(p, default: str | None = "production") -> None:
    p.add_argument("--alias", default=default, help="the alias to move (default production)" if default else
                   "the alias to move (default production; canary where the store verifies live)")
    p.add_argument("--reason", help="why (recorded in the alias history)")
    p.add_argument("--pointer-dir", default="runs", help="where {alias}.json is written (default runs)")
    add_store(p)


def _promote_args(p) -> None:
    p.add_argument("run", help="run id or run directory")
    p.add_argument("--force", action="store_true", help="override the gate (needs --reason)")
    p.add_argument("--skip-live-check", action="store_true",
                   help="move production directly in a store that verifies live (needs --reason)")
    _alias_args(p, default=None)


def rollback(args) -> int:
    """Move an alias (default production) back to the run it pointed to before the current one."""
    from eval.registry import rollback as move_back
    from signals.store import default_db, store

    path = args.store or default_db()
    if not Path(path).is_file():
        from signals.store import StoreMissing

        raise StoreMissing(f"signal store {path} does not exist: nothing is registered there")
    with store(path, wait=args.wait) as con:
        target = move_back(con, alias=args.alias, pointer_dir=args.pointer_dir, reason=args.reason)
    print(f"{args.alias} -> {target or '(none)'}")
    return 0


def dashboard(args) -> int:
    """Build the static HTML dashboard (index + one page per evaluation) from the store."""
    from eval.dashboard.build import dashboard as build
    from signals.store import StoreMissing, default_db

    path = args.store or default_db()
    if not Path(path).is_file():
        raise StoreMissing(f"signal store {path} does not exist: nothing to show (pass --store FILE)")
    return build(out=args.out, db=path, wait=args.wait)


def _dashboard_args(p) -> None:
    p.add_argument("--out", default="dashboard", help="folder to write (default dashboard)")
    add_store(p)


VERBS = {
    "run": Verb(run, _run_args, "python -m eval run +exp=smoke", overrides=True),
    "calibrate": Verb(calibrate, _run_args, "python -m eval calibrate +exp=smoke", overrides=True),
    "registry": Verb(registry, _registry_args, "python -m eval registry --store data/smoke/signal.duckdb"),
    "promote": Verb(promote, _promote_args, "python -m eval promote RUN_ID --store data/smoke/signal.duckdb"),
    "rollback": Verb(rollback, _alias_args, "python -m eval rollback --reason 'bad answers' "
                     "--store data/smoke/signal.duckdb"),
    "dashboard": Verb(dashboard, _dashboard_args, "python -m eval dashboard --store data/smoke/signal.duckdb "
                      "--out dashboard"),
}


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m eval", "Evaluate and gate a candidate, manage the registry and the dashboard.",
                   VERBS, argv, default="run")


if __name__ == "__main__":
    sys.exit(main())
