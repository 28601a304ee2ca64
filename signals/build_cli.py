"""The `build` and `snapshots` verbs of `python -m signals` (wired in signals/__main__.py).

    python -m signals build data=demo                       # conf/data/demo.yaml
    python -m signals build data=defacto split.method=time --store data/real/defacto/signal.duckdb
    python -m signals build data=demo split.eval_count=400 --metric winrate --effect 0.1
    python -m signals snapshots                             # list, newest first
    python -m signals snapshots show demo-3fa2c1b9e0d4 --json

`build` composes `conf/build.yaml` (store, snapshot_root and the recipe `data/`), the
same node `python -m train` builds from; recipe overrides may drop the `data.` prefix
(`split.method=time` == `data.split.method=time`). A misspelled option fails naming
the close match (the recipe's schema is `signals.recipe.Recipe`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from signals.cli import add_store, store_overrides

ROOT_KEYS = ("store", "snapshot_root", "data")


def compose_recipe(overrides: list[str]) -> tuple[dict, str, str]:
    """(recipe dict, store path, snapshot root) from conf/build.yaml and Hydra overrides."""
    from omegaconf import OmegaConf

    from signals.config import compose
    from signals.recipe import Recipe, register_schema

    fixed = []
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key.split(".", 1)[0] not in ROOT_KEYS and "/" not in key:
            o = o[: len(o) - len(o.lstrip("+~"))] + "data." + o.lstrip("+~")   # split.method=x -> data.split.method=x
        fixed.append(o)
    register_schema()
    cfg = compose(fixed, config_name="build", schemas={"data": Recipe}, root_keys=ROOT_KEYS)
    recipe = OmegaConf.to_container(cfg.data, resolve=True)
    return recipe, str(cfg.store), str(cfg.snapshot_root)


def build(args) -> int:
    """Build a dataset snapshot from the store: `build data=RECIPE [overrides]`.

    Prints the counts per kind and split, what was excluded and why, the version, and the
    difference its eval split can detect (signals/power.py)."""
    from signals.build import build_snapshot
    from signals.store import StoreMissing, open_store

    recipe, store, root = compose_recipe(store_overrides(args))
    if not Path(store).is_file():
        raise StoreMissing(f"signal store {store} does not exist (ingest logs first: "
                           f"python -m signals ingest PATH --store {store})")
    con = open_store(store, wait=args.wait)
    try:
        snap = build_snapshot(recipe, con, root, progress=None if not args.json else False)
    finally:
        con.close()
    reports = power_reports(snap.manifest, args.metric, args.effect, args.sd)
    if args.json:
        print(json.dumps({"version": snap.version, "path": str(snap.path), **snap.manifest, "power": reports},
                         indent=2, default=str))
        return 0
    print(describe(snap.manifest, str(snap.path)))
    from signals.power import describe as describe_power

    for r in reports:
        print(describe_power(r))
    return 0


def power_reports(manifest: dict, metrics: list[str] | None, effect: float | None, sd: float | None) -> list[dict]:
    """signals.power's report for each metric (default: those with a known sd whose eval split
    is enabled): what this snapshot's eval split can detect, and the size `effect` needs."""
    from signals.power import DEFAULT_SD, METRIC_KIND, eval_size, report

    recipe = manifest.get("recipe") or {}
    if not metrics:
        metrics = [m for m in ("preference_accuracy", "winrate") if DEFAULT_SD.get(m)
                   and (recipe.get(METRIC_KIND[m]) or {}).get("enabled", True)]
    unknown = [m for m in metrics if m not in METRIC_KIND]
    if unknown:
        raise ValueError(f"--metric: unknown {unknown}; choose from {', '.join(METRIC_KIND)}")
    return [report(m, eval_size(m, manifest.get("counts") or {}), effect=effect, sd=sd) for m in metrics]


def describe(m: dict, path: str) -> str:
    """A human summary of a manifest: counts, KTO classes and weights, exclusions, redactions."""
    lines = [f"snapshot {m['version']}  ({path})", f"recipe {m['recipe']['name']}, built {m['created_at']}",
             "", f"{'kind':<6}{'train':>9}{'eval':>9}"]
    for kind, c in m["counts"].items():
        lines.append(f"{kind:<6}{c['train']:>9}{c['eval']:>9}")
    kc, kw = m.get("kto_classes", {}).get("train", {}), m.get("kto_weights", {})
    if kc:
        lines.append(f"kto train: {kc.get('desirable', 0)} desirable / {kc.get('undesirable', 0)} undesirable "
                     f"-> desirable_weight={kw.get('desirable_weight')}, undesirable_weight={kw.get('undesirable_weight')}")
    for kind, c in m["counts"].items():
        enabled = (m.get("recipe", {}).get(kind) or {}).get("enabled", True)
        if enabled and c["eval"] == 0:
            lines.append(f"warning: the {kind} eval split is empty: metrics computed from it "
                         f"(see docs/eval.md) cannot be gated on this snapshot")
    lines.append("")
    lines.append("excluded:" if m["exclusions"] else "excluded: nothing")
    for reason, n in m["exclusions"].items():
        lines.append(f"  {reason:<34}{n:>9}")
    red = m.get("redactions") or {}
    lines.append("PII redacted: " + (", ".join(f"{k} {n}" for k, n in red.items()) if red else "none found"))
    return "\n".join(lines)


def build_args(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="report power for this gate metric (repeatable; default preference_accuracy and winrate)")
    p.add_argument("--effect", type=float, metavar="X", help="the difference worth detecting: the eval size it needs")
    p.add_argument("--sd", type=float, metavar="S", help="per-example sd of the difference (default: signals.power)")


def snapshots(args) -> int:
    """List dataset snapshots (newest first), or `snapshots show VERSION` for one manifest."""
    from signals.snapshot import list_snapshots
    from signals.store import default_db, open_store

    store = args.store or default_db()
    con = open_store(store, read_only=True, wait=args.wait)
    try:
        rows = list_snapshots(con)
    finally:
        con.close()
    if args.action == "show":
        if not args.version:
            raise ValueError("snapshots show: give a VERSION (see `python -m signals snapshots`)")
        match = [r for r in rows if r["version"] == args.version]
        if not match:
            raise ValueError(f"no snapshot {args.version!r} in {store}")
        r = match[0]
        if args.json:
            print(json.dumps({**r["manifest"], "path": r["path"], "revoked_at": r["revoked_at"],
                              "revoked_reason": r["revoked_reason"], "interactions": r["interactions"],
                              "status": status(r)}, indent=2, default=str))
        else:
            print(describe(r["manifest"], r["path"]))
            print(f"interactions held: {r['interactions']}")
            print(f"status: {status(r)}")
        return 0
    if args.json:
        print(json.dumps([{**{k: v for k, v in r.items() if k != "manifest"}, "status": status(r)} for r in rows],
                         indent=2, default=str))
        return 0
    if not rows:
        print("no snapshots yet: python -m signals build data=RECIPE" + (f" --store {args.store}" if args.store else ""))
        return 0
    print(f"{'version':<28}{'created':<27}{'sft':>8}{'pref':>8}{'kto':>8}  status")
    for r in rows:
        c = r["counts"] or {}
        n = {k: sum(c.get(k, {}).values()) for k in ("sft", "pref", "kto")}
        print(f"{r['version']:<28}{str(r['created_at'] or ''):<27}{n['sft']:>8}{n['pref']:>8}{n['kto']:>8}  {status(r)}")
    return 0


def status(r: dict) -> str:
    """ok, revoked (why), or missing (its folder or files are gone)."""
    if r["revoked_at"]:
        return f"revoked ({r['revoked_reason']})"
    path = Path(r["path"])
    if not path.is_dir():
        return f"missing: {path} (the folder was deleted)"
    files = (r["manifest"] or {}).get("files") or {}
    lost = [f for f in files if not (path / f).is_file()]
    return f"missing: {len(lost)} of {len(files)} file(s) in {path}" if lost else "ok"


def snapshots_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list", help="list (default) or show")
    p.add_argument("version", nargs="?", help="the snapshot version (for show)")
    add_store(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
