"""The stage chain, written once: ingest → build → verify → train → eval (gate) → promote → dashboard.

`python -m train` runs the stages its config lists (`stages: [ingest, build, train, eval,
promote]`); the scheduled job (`scripts/nightly.py`) runs the same functions with its
lock and its plan (skip, resume, eval only) between build and train. Each stage takes
the run's `Context` and returns the fields of its one JSON log line.

    ingest    fill a missing store on first use (`seed_store`); the scheduled job: the landing folder too
    build     `signals.build.build_snapshot` (an identical snapshot is reused), or `snapshot=` opened
    verify    `online.enabled`: the live check of the canary (eval/verify.py): wait, promote or roll back
    train     freeze the config into the run dir, start the workers, write manifest.json and the card
    eval      `eval.harness.evaluate`: score both models, apply the gate, record it in the registry
    promote   move `production` (`canary` with `online.enabled`) when the gate promoted and
              `gate.auto_promote` is on
    dashboard `eval.dashboard.build.build_site` into `nightly.dashboard`
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

STAGES = ("ingest", "build", "verify", "train", "eval", "promote", "dashboard")


@dataclass
class Context:
    """What the stages hand on: the config, the snapshot, the run directory, the decision."""
    cfg: DictConfig
    started: float = field(default_factory=time.time)
    snapshot: object | None = None          # signals.snapshot.Snapshot
    run_dir: Path | None = None
    result: dict | None = None              # eval.harness.evaluate's decision
    log: Callable[..., dict] | None = None  # how each stage reports: `log` (JSON lines) or `say`
    landing: bool = False                   # the scheduled job also ingests `nightly.landing`
    verified: dict | None = None            # the verify stage's live decision


def log(stage: str, status: str, started: float, **fields) -> dict:
    """One machine-readable line per stage on stdout (timings and counts): the scheduled job's."""
    line = {"stage": stage, "status": status, "seconds": round(time.monotonic() - started, 2), **fields}
    print(json.dumps(line, default=str), flush=True)
    return line


def say(stage: str, status: str, started: float, **fields) -> dict:
    """One short line per stage for a person at a terminal (`python -m train`)."""
    seconds = time.monotonic() - started
    shown = {k: v for k, v in fields.items() if k in ("version", "run", "decision", "promoted", "error", "note",
                                                       "interactions", "quarantined", "seeded")}
    detail = ", ".join(f"{k} {v}" for k, v in shown.items() if not isinstance(v, dict | list))
    if isinstance(shown.get("seeded"), dict):
        detail = f"seeded the store: {shown['seeded'].get('interactions')} interactions" + (f", {detail}" if detail else "")
    print(f"train: {stage:<9} {status:<7} {seconds:6.1f} s  {detail}", flush=True)
    return {"stage": stage, "status": status, **fields}


# ----------------------------------------------------------------------------- ingest


def ingest(ctx: Context) -> dict:
    """Seed a missing store (simulator and/or files), then ingest the landing folder, if any."""
    from signals.ingest import ingest_paths

    cfg, out = ctx.cfg, {}
    store = Path(str(cfg.store))
    seed = cfg.get("seed_store")
    if seed and not store.exists():
        store.parent.mkdir(parents=True, exist_ok=True)
        if seed.get("simulate"):
            from scripts.simulate import simulate

            landing = store.parent / "landing"
            simulate(landing, **OmegaConf.to_container(seed.simulate, resolve=True))
            out["seeded"] = _summary(ingest_paths([str(landing)], db=str(store), progress=False))
        if seed.get("ingest"):
            from signals.fetch import require_path

            paths = [str(require_path(p)) for p in seed.ingest.paths]   # missing: names `signals fetch NAME`
            out["seeded"] = _summary(ingest_paths(paths, db=str(store), source=seed.ingest.get("source"),
                                                  progress=False))
    nightly = cfg.get("nightly")
    if ctx.landing and nightly:
        landing = Path(str(nightly.landing))
        if nightly.get("simulate") and not any(landing.glob("*")):
            from scripts.simulate import simulate

            simulate(landing, **OmegaConf.to_container(nightly.simulate, resolve=True))
        if landing.is_dir() and any(landing.iterdir()):
            out.update(_summary(ingest_paths([str(landing)], db=str(store))))
        else:
            out["note"] = f"landing folder {landing} is empty"
    return out


def _summary(s: dict) -> dict:
    keep = ("skipped_files", "records", "interactions", "feedback", "duplicates", "pending", "quarantined")
    return {"files": len(s["files"])} | {k: s[k] for k in keep if k in s} | {"quarantine": s.get("quarantine", {})}


# ----------------------------------------------------------------------------- build


def build(ctx: Context) -> dict:
    """The snapshot this run trains on: `snapshot=` (a version or folder) or a fresh build."""
    from signals import snapshot

    cfg = ctx.cfg
    if cfg.get("snapshot"):
        ctx.snapshot = snapshot.open(str(cfg.snapshot), root=str(cfg.snapshot_root), store=str(cfg.store))
    else:
        from signals.build import build_snapshot
        from signals.store import StoreMissing

        if not Path(str(cfg.store)).is_file():
            hint = ("add the ingest stage, which seeds it from seed_store (stages=[ingest,build,...])"
                    if cfg.get("seed_store") else f"ingest logs first (python -m signals ingest PATH --store {cfg.store})")
            raise StoreMissing(f"signal store {cfg.store} does not exist: {hint}")
        recipe = OmegaConf.to_container(cfg.data, resolve=True)
        built = build_snapshot(recipe, str(cfg.store), str(cfg.snapshot_root), progress=False)
        ctx.snapshot = snapshot.open(built.path, store=str(cfg.store))
    with open_dict(cfg):
        cfg.resolved = {"snapshot": {"version": ctx.snapshot.version, "path": str(ctx.snapshot.path)}}
    return {"version": ctx.snapshot.version, "path": str(ctx.snapshot.path),
            "counts": ctx.snapshot.manifest.get("counts")}


# ----------------------------------------------------------------------------- train


def train(ctx: Context) -> dict:
    """Freeze the config into the run dir, run the methods on every rank, write manifest and card."""
    from train.launch import launch
    from train.models import ensure_kit
    from train.outputs import write_manifest
    from train.rundir import freeze

    cfg = ctx.cfg
    if not (cfg.get("resolved") or {}).get("snapshot"):
        raise ValueError("stage train needs a snapshot: add the build stage, or pass snapshot=VERSION_OR_PATH")
    frozen = freeze(cfg)
    ensure_kit(cfg.model)
    launch(cfg, frozen)
    manifest = write_manifest(cfg, ctx.started)
    ctx.run_dir = Path(str(cfg.run_dir))
    return {"run": str(ctx.run_dir), "global_step": manifest["metrics"].get("global_step"),
            "wall_time_s": manifest["wall_time_s"]}


# ----------------------------------------------------------------------------- eval, promote


def evaluate(ctx: Context) -> dict:
    """Score candidate and baseline, gate, record the decision; rewrite the card with the figures."""
    from eval.harness import evaluate as run_eval
    from train.card import write_card
    from train.rundir import FROZEN, MANIFEST, load_frozen

    run_dir = ctx.run_dir or Path(str(ctx.cfg.run_dir))
    if not (run_dir / MANIFEST).is_file():
        raise FileNotFoundError(f"no finished run at {run_dir} to evaluate (no {MANIFEST}); train it first")
    cfg = load_frozen(run_dir / FROZEN) if (run_dir / FROZEN).is_file() else ctx.cfg
    for key in ("eval", "gate", "store"):          # this command's eval settings, not the frozen ones
        with open_dict(cfg):
            cfg[key] = ctx.cfg[key]
    ctx.run_dir, ctx.result = run_dir, run_eval(cfg, str(run_dir))
    write_card(run_dir, json.loads((run_dir / MANIFEST).read_text()), ctx.result)
    r = ctx.result
    return {"decision": r["decision"], "reasons": r["reasons"], "eval_id": r["eval_id"],
            "report": r["examples_dir"]}


def promote(ctx: Context) -> dict:
    """Move `production` to the run when the gate said promote and `gate.auto_promote` is on;
    with `online.enabled` the run becomes the canary, and the verify stage decides the rest."""
    from eval.registry import promote_if_allowed

    if ctx.result is None:
        return {"promoted": False, "note": "no evaluation in this run"}
    online = ctx.cfg.get("online") or {}
    alias = "canary" if online.get("enabled") else "production"
    base = str(ctx.cfg.model.name_or_path)
    promoted, why = promote_if_allowed(str(ctx.cfg.store), ctx.result, ctx.cfg.gate, alias=alias,
                                       pointer_dir=ctx.cfg.eval.registry.pointer_dir, base_model=base)
    ctx.result["promoted"] = promoted
    return {"promoted": promoted, "alias": alias, "reason": why}


def verify(ctx: Context) -> dict:
    """`online.enabled`: compare the canary with production on live signal; promote, roll back or wait."""
    from eval.verify import settings
    from eval.verify import verify as check
    from signals.store import store as open_store

    online = ctx.cfg.get("online") or {}
    if not online.get("enabled"):
        return {"note": "online.enabled is false: nothing to verify"}
    with open_store(str(ctx.cfg.store)) as con:
        out = check(con, settings(online), pointer_dir=ctx.cfg.eval.registry.pointer_dir)
    ctx.verified = out
    return out


def dashboard(ctx: Context) -> dict:
    from eval.dashboard.build import build_site

    out = (ctx.cfg.get("nightly") or {}).get("dashboard")
    if not out:
        return {"note": "nightly.dashboard is null: skipped"}
    pages = build_site(str(ctx.cfg.store), str(out))
    return {"pages": len(pages), "index": str(Path(str(out)).resolve() / "index.html")}


FUNCTIONS = {"ingest": ingest, "build": build, "verify": verify, "train": train, "eval": evaluate,
             "promote": promote, "dashboard": dashboard}


def run(ctx: Context, stages: list[str]) -> Context:
    """Run `stages` in chain order; each logs one JSON line; a failure names its stage and raises."""
    for name in STAGES:
        if name not in stages:
            continue
        t = time.monotonic()
        report = ctx.log or log
        try:
            fields = FUNCTIONS[name](ctx)
        except Exception as e:
            report(name, "failed", t, error=f"{type(e).__name__}: {e}")
            raise
        report(name, "ok", t, **fields)
    return ctx
