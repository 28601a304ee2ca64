"""`python -m signals build` and `python -m signals snapshots` (wired in signals/__main__.py).

    python -m signals build data=demo                       # conf/data/demo.yaml
    python -m signals build data=defacto split.method=time data.split.eval_fraction=0.2
    python -m signals snapshots                             # list, newest first
    python -m signals snapshots show demo-3fa2c1b9e0d4 --json

`build` composes the root `conf/config.yaml` with Hydra's compose API, so a recipe
is the same node `python -m train` builds from; overrides of the recipe may drop
the `data.` prefix (`split.method=time` == `data.split.method=time`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
ROOT_KEYS = {"store", "snapshot_root", "seed", "exp_name"}


def compose_recipe(overrides: list[str], config_dir: Path = CONF_DIR) -> tuple[dict, str, str]:
    """(recipe dict, store path, snapshot root) from conf/ and Hydra overrides."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    fixed = []
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        top = key.split(".", 1)[0]
        if "." in key and top not in ROOT_KEYS and top != "data" and "=" in o and not o.startswith(("+", "~")):
            o = "data." + o          # split.method=time -> data.split.method=time
        fixed.append(o)
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name="config", overrides=fixed)
    except HydraException as e:      # unknown recipe, bad override: a usage error, not a crash
        raise ValueError(f"config {config_dir}/config.yaml with overrides {fixed}: {e}") from None
    recipe = OmegaConf.to_container(cfg.data, resolve=True)
    return recipe, str(cfg.store), str(cfg.snapshot_root)


def build(args) -> int:
    """Build a dataset snapshot from the store: `build data=RECIPE [Hydra overrides]`.
    Prints the counts per kind and split, what was excluded and why, and the version."""
    from signals.build import build_snapshot
    from signals.store import open_store

    recipe, store, root = compose_recipe(args.overrides)
    store = args.db or store
    con = open_store(store, read_only=False, wait=args.wait)
    try:
        snap = build_snapshot(recipe, con, root, progress=None if not args.json else False)
    finally:
        con.close()
    if args.json:
        print(json.dumps({"version": snap.version, "path": str(snap.path), **snap.manifest}, indent=2, default=str))
        return 0
    print(describe(snap.manifest, str(snap.path)))
    return 0


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
    lines.append("")
    lines.append("excluded:" if m["exclusions"] else "excluded: nothing")
    for reason, n in m["exclusions"].items():
        lines.append(f"  {reason:<34}{n:>9}")
    red = m.get("redactions") or {}
    lines.append("PII redacted: " + (", ".join(f"{k} {n}" for k, n in red.items()) if red else "none found"))
    return "\n".join(lines)


def build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="Hydra overrides, e.g. data=defacto split.method=user caps.per_user=50")
    p.add_argument("--db", default=None, help="store file (default: the config's `store`, i.e. $SIGNALS_DB "
                                              "or data/signal.duckdb)")
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help="wait this long for another writer to finish (default 10)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def snapshots(args) -> int:
    """List dataset snapshots (newest first), or `snapshots show VERSION` for one manifest."""
    from signals.build import list_snapshots
    from signals.store import default_db

    store = args.db or default_db()
    if not Path(store).exists():
        raise FileNotFoundError(f"signal store {store} does not exist")
    rows = list_snapshots(store)
    if args.action == "show":
        if not args.version:
            raise ValueError("snapshots show: give a VERSION (see `python -m signals snapshots`)")
        match = [r for r in rows if r["version"] == args.version]
        if not match:
            raise ValueError(f"no snapshot {args.version!r} in {store}")
        r = match[0]
        if args.json:
            print(json.dumps({**r["manifest"], "path": r["path"], "revoked_at": r["revoked_at"],
                              "revoked_reason": r["revoked_reason"], "interactions": r["interactions"]},
                             indent=2, default=str))
        else:
            print(describe(r["manifest"], r["path"]))
            print(f"interactions held: {r['interactions']}")
            if r["revoked_at"]:
                print(f"REVOKED {r['revoked_at']}: {r['revoked_reason']}")
        return 0
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "manifest"} for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print("no snapshots yet: python -m signals build data=RECIPE")
        return 0
    print(f"{'version':<28}{'created':<27}{'sft':>8}{'pref':>8}{'kto':>8}  status")
    for r in rows:
        c = r["counts"] or {}
        n = {k: sum(c.get(k, {}).values()) for k in ("sft", "pref", "kto")}
        status = f"revoked ({r['revoked_reason']})" if r["revoked_at"] else "ok"
        print(f"{r['version']:<28}{r['created_at'] or '':<27}{n['sft']:>8}{n['pref']:>8}{n['kto']:>8}  {status}")
    return 0


def snapshots_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list", help="list (default) or show")
    p.add_argument("version", nargs="?", help="the snapshot version (for show)")
    p.add_argument("--db", default=None, help="store file (default: $SIGNALS_DB or data/signal.duckdb)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
