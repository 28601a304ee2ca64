"""python -m eval: evaluate and gate a candidate, and manage the registry.

    python -m eval +exp=NAME [candidate=RUN_DIR] [baseline=MODEL] [key=value ...]
    python -m eval registry [--json]
    python -m eval promote RUN [--force --reason TEXT]
    python -m eval rollback [--reason TEXT]

The default command composes conf/ with Hydra exactly like `python -m train`
(so `eval.*` and `gate.*` overrides work) and evaluates RUN_DIR, or the newest
run under `{output_root}/{exp_name}/`. `baseline` is a model folder or hub id,
`production` (the run the alias points to), or by default the run's base model.
Exit status: 0 when an evaluation completed (whatever the decision), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHORTHANDS = {"candidate": "eval.candidate", "baseline": "eval.baseline", "snapshot": "eval.snapshot"}


def _default_store() -> str:
    return os.environ.get("SIGNALS_DB", "data/signal.duckdb")


def compose(overrides: list[str]):
    """The root config with `candidate=`/`baseline=`/`snapshot=` mapped into `eval.`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    mapped = []
    for o in overrides:
        key, eq, value = o.partition("=")
        mapped.append(f"{SHORTHANDS[key]}={value}" if eq and key in SHORTHANDS else o)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=mapped)


def latest_run(output_root: str, exp_name: str) -> Path:
    """The newest `{output_root}/{exp_name}/*` holding a manifest.json."""
    from eval import EvalError

    runs = [p.parent for p in Path(output_root, exp_name).glob("*/manifest.json")]
    if not runs:
        raise EvalError(f"no run found under {Path(output_root, exp_name)}/ "
                        "(train one with `python -m train +exp=...` or pass candidate=RUN_DIR)")
    return max(runs, key=lambda p: p.stat().st_mtime)


def cmd_eval(argv: list[str]) -> int:
    """Evaluate a candidate run against the baseline and apply the gate."""
    from eval.harness import evaluate

    cfg = compose(argv)
    candidate = cfg.eval.get("candidate") or latest_run(cfg.output_root, cfg.exp_name)
    result = evaluate(cfg, str(candidate))
    print(format_result(result))
    return 0


def format_result(result: dict) -> str:
    lines = [f"run {result['run_id']} vs baseline {result['baseline']} "
             f"(snapshot {result['snapshot_version']}, eval {result['eval_id']})",
             f"{'metric':26} {'baseline':>10} {'candidate':>10} {'diff':>9} {'CI low':>9} {'CI high':>9} "
             f"{'n':>6} {'MDE':>8}"]
    for name, m in result["metrics"].items():
        lines.append(f"{name:26} {m['baseline']:10.4f} {m['candidate']:10.4f} {m['diff']:+9.4f} "
                     f"{m['ci_low']:+9.4f} {m['ci_high']:+9.4f} {m['n']:6d} {m['mde']:8.4f}")
    lines.append(f"decision: {result['decision'].upper()}" + ("  (production moved)" if result.get("promoted") else ""))
    lines += [f"  - {r}" for r in result["reasons"]]
    lines += [f"  note: {n}" for n in result.get("notes", [])]
    lines.append(f"per-example results: {result['examples_dir']}")
    return "\n".join(lines)


def cmd_registry(argv: list[str]) -> int:
    """List registered runs: latest decision, aliases, tainted (revoked snapshot)."""
    from eval.registry import alias_history, list_runs
    from signals.store import open_store

    p = argparse.ArgumentParser(prog="python -m eval registry", description=cmd_registry.__doc__)
    p.add_argument("--json", action="store_true", help="print JSON (runs and alias history)")
    p.add_argument("--store", default=_default_store())
    a = p.parse_args(argv)
    con = open_store(a.store)
    try:
        runs, history = list_runs(con), alias_history(con)
    finally:
        con.close()
    if a.json:
        print(json.dumps({"runs": runs, "aliases": history}, indent=2, default=str))
        return 0
    if not runs:
        print(f"no runs registered in {a.store}")
        return 0
    for alias in sorted({h["alias"] for h in history}):
        target = next((r["run_id"] for r in runs if alias in r["aliases"]), None)
        moves = sum(h["alias"] == alias for h in history)
        print(f"{alias} -> {target or '(none)'}  ({moves} moves; --json for the history)")
    print(f"{'run_id':32} {'exp':20} {'method':7} {'decision':13} {'aliases':12} tainted")
    for r in runs:
        taint = f"TAINTED ({r['taint_reason']})" if r["tainted"] else ""
        print(f"{r['run_id']:32} {str(r['exp_name']):20} {str(r['method']):7} {str(r['decision']):13} "
              f"{','.join(r['aliases']):12} {taint}")
    return 0


def cmd_promote(argv: list[str]) -> int:
    """Point `production` at RUN (run id or run dir); needs a promote decision unless --force."""
    from eval.registry import promote
    from signals.store import open_store

    p = argparse.ArgumentParser(prog="python -m eval promote", description=cmd_promote.__doc__)
    p.add_argument("run", help="run id or run directory")
    p.add_argument("--alias", default="production")
    p.add_argument("--force", action="store_true", help="override the gate (needs --reason)")
    p.add_argument("--reason")
    p.add_argument("--store", default=_default_store())
    p.add_argument("--pointer-dir", default="runs", help="where {alias}.json is written")
    a = p.parse_args(argv)
    con = open_store(a.store)
    try:
        run_id = promote(con, a.run, alias=a.alias, pointer_dir=a.pointer_dir, force=a.force, reason=a.reason)
    finally:
        con.close()
    print(f"{a.alias} -> {run_id}")
    return 0


def cmd_rollback(argv: list[str]) -> int:
    """Move `production` back to the run it pointed to before the current one."""
    from eval.registry import rollback
    from signals.store import open_store

    p = argparse.ArgumentParser(prog="python -m eval rollback", description=cmd_rollback.__doc__)
    p.add_argument("--alias", default="production")
    p.add_argument("--reason")
    p.add_argument("--store", default=_default_store())
    p.add_argument("--pointer-dir", default="runs")
    a = p.parse_args(argv)
    con = open_store(a.store)
    try:
        target = rollback(con, alias=a.alias, pointer_dir=a.pointer_dir, reason=a.reason)
    finally:
        con.close()
    print(f"{a.alias} -> {target or '(none)'}")
    return 0


from eval.dashboard import cmd_dashboard  # noqa: E402  (light; plotly loads only when it runs)

COMMANDS = {"registry": cmd_registry, "promote": cmd_promote, "rollback": cmd_rollback,
            "dashboard": cmd_dashboard}


def main(argv: list[str] | None = None) -> int:
    from eval import EvalError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        for name, fn in {"(default)": cmd_eval, **COMMANDS}.items():
            print(f"  {name:10} {fn.__doc__.splitlines()[0]}")
        return 0
    fn = COMMANDS.get(argv[0]) if argv else None
    try:
        return fn(argv[1:]) if fn else cmd_eval(argv)
    except EvalError as e:
        print(f"eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
