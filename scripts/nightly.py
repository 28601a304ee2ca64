"""The scheduled job: lock → ingest → build → verify → plan → train → eval → promote → dashboard.

    python -m scripts nightly +exp=demo                        # what cron / CronJob / Slurm run
    python -m scripts nightly +exp=demo nightly.min_new_interactions=500
    python -m scripts nightly +exp=demo launcher=ddp            # training through the launcher

The stages are `scripts.stages`, the same chain `python -m train` runs; this job adds
the lock and the plan. Idempotent and resumable: ingest takes only files not ingested
before (content hash), the build reuses an identical snapshot, a snapshot that already
has a trained and evaluated run (a decision in the registry) is "nothing to do", a
finished but unevaluated run is only evaluated, and an interrupted training resumes
from its last checkpoint. One JSON line per stage goes to stdout. Exit codes: the table
in signals/cli.py (0 promoted or nothing to do, 1 a stage failed, 2 bad config,
3 another run holds the lock, 4 trained and evaluated but not promoted).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from scripts import stages as chain
from signals.cli import EXIT_FAILED, EXIT_LOCKED, EXIT_NOT_PROMOTED, EXIT_OK, store_overrides


class Locked(RuntimeError):
    """Another nightly run holds the lock."""


@contextmanager
def run_lock(path: str | Path):
    """An exclusive, non-blocking flock: two runs never overlap, a crash frees it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = Path(path).read_text().strip() or "unknown"
        os.close(fd)
        raise Locked(f"another nightly run holds {path} ({holder}); not starting a second one") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}".encode())
        yield
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def runs_of(cfg) -> list[tuple[Path, dict | None]]:
    """(run dir, manifest or None) of this experiment, newest first."""
    root = Path(str(cfg.output_root)) / str(cfg.exp_name)
    if not root.is_dir():
        return []
    out = []
    for d in sorted((p for p in root.iterdir() if (p / "config.yaml").exists()), key=lambda p: p.name, reverse=True):
        m = d / "manifest.json"
        out.append((d, json.loads(m.read_text()) if m.exists() else None))
    return out


def _frozen_snapshot(run_dir: Path) -> str | None:
    frozen = OmegaConf.load(str(run_dir / "config.yaml"))
    return OmegaConf.select(frozen, "resolved.snapshot.version")


def _decided(cfg, run_id: str) -> dict | None:
    """The run's latest decision in the registry (the one record of decisions), or None."""
    from eval.registry import latest_decision
    from signals.store import store

    if not Path(str(cfg.store)).is_file():
        return None
    with store(str(cfg.store), read_only=True) as con:
        has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'decisions'").fetchone()[0]
        return latest_decision(con, run_id) if has else None


def new_interactions(cfg, version: str, since: str | None) -> int:
    """Interactions in snapshot `version` that the snapshot `since` did not hold."""
    from signals.store import store

    with store(str(cfg.store), read_only=True) as con:
        if since is None:
            return con.execute("SELECT count(DISTINCT interaction_id) FROM snapshot_members WHERE version = ?",
                               [version]).fetchone()[0]
        return con.execute(
            "SELECT count(DISTINCT interaction_id) FROM snapshot_members WHERE version = ? "
            "AND interaction_id NOT IN (SELECT interaction_id FROM snapshot_members WHERE version = ?)",
            [version, since]).fetchone()[0]


def _leave_tainted(cfg) -> list[str]:
    """`production` off runs trained on revoked snapshots, however they were revoked."""
    from eval.erasure import leave_tainted
    from signals.store import store

    with store(str(cfg.store)) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'aliases'").fetchone()[0]:
            return []
        return leave_tainted(con, pointer_dir=str(cfg.eval.registry.pointer_dir))


def power_check(cfg, version: str) -> tuple[str | None, str | None]:
    """(refusal, warning) when `gate.power.effect` is set and the eval split of snapshot `version`
    is too small to detect it for `gate.primary` (signals/power.py); `gate.power.on_short` picks which."""
    from signals import power, snapshot

    pw = OmegaConf.to_container(cfg.gate, resolve=True).get("power") or {}
    primary = cfg.gate.get("primary")
    if not pw.get("effect") or primary not in power.METRIC_KIND:
        return None, None
    counts = snapshot.open(version, root=str(cfg.snapshot_root), store=str(cfg.store)).manifest.get("counts") or {}
    ev = cfg.eval
    n = power.eval_size(primary, counts, ev.generation.max_prompts, ev.get("max_examples"))
    r = power.report(primary, n, effect=float(pw["effect"]), sd=pw.get("sd"),
                     confidence=ev.bootstrap.confidence, power=ev.bootstrap.power)
    if not r["short"]:
        return None, None
    line = power.describe(r) + " (gate.power; hold out more: data.split.eval_count or eval_fraction)"
    return (line, None) if pw.get("on_short") == "refuse" else (None, line)


def plan(cfg, version: str) -> tuple[str, Path | None, str]:
    """What to do with this snapshot: ('done'|'eval'|'train'|'skip'|'refuse', run dir, why); 'refuse' when
    the eval split cannot detect gate.power.effect and gate.power.on_short is refuse."""
    runs = runs_of(cfg)
    for run_dir, manifest in runs:
        if manifest and manifest.get("snapshot_version") == version:
            if _decided(cfg, str(manifest.get("run_id") or run_dir.name)):
                return "done", run_dir, f"snapshot {version} was already trained and evaluated ({run_dir.name})"
            return "eval", run_dir, f"run {run_dir.name} finished training but was not evaluated"
        if manifest is None and _frozen_snapshot(run_dir) == version:
            return "train", run_dir, f"resuming unfinished run {run_dir.name}"
    trained = next((m.get("snapshot_version") for _, m in runs if m), None)
    from signals.snapshot import is_revoked

    if trained is not None and is_revoked(str(cfg.store), trained):
        return "train", None, f"the last trained snapshot {trained} was revoked (signals forget): retraining"
    new = new_interactions(cfg, version, trained)
    if trained is not None and new < int(cfg.nightly.min_new_interactions):
        return "skip", None, (f"{new} new interactions since the last trained snapshot {trained} "
                              f"(< nightly.min_new_interactions={cfg.nightly.min_new_interactions})")
    refused, warning = power_check(cfg, version)
    if refused:
        return "refuse", None, f"not training: {refused}"
    if warning:
        print(f"nightly: warning: {warning}", file=sys.stderr)
    return "train", None, (f"{new} new interactions since {'the last trained snapshot ' + trained if trained else 'the start'}"
                           + (f"; warning: {warning}" if warning else ""))


def nightly(args) -> int:
    """Run the scheduled job once: ingest the landing folder, build, train, gate, promote, dashboard.

    Nothing to do when no new signal arrived; a killed run resumes where it stopped."""
    from scripts.config import compose
    from train.config import validate
    from train.console import configure

    configure(args.quiet)
    t = time.monotonic()
    cfg = compose(store_overrides(args))
    validate(cfg)
    try:
        with run_lock(OmegaConf.to_container(cfg.nightly, resolve=True)["lock"]):
            return _pipeline(cfg)
    except Locked as e:
        chain.log("lock", "busy", t, error=str(e))
        print(f"nightly: {e}", file=sys.stderr)
        return EXIT_LOCKED


def _say_verified(out: dict | None) -> None:
    if not out or not out.get("decision"):
        return
    what = {"promote": "promoted to production", "rollback": "rolled back", "wait": "kept waiting"}
    print(f"nightly: live check: canary {out['canary']} {what[out['decision']]}: {out['reasons'][0]}",
          file=sys.stderr)


def _pipeline(cfg) -> int:
    from omegaconf import open_dict

    from train.rundir import FROZEN, fix_run_dir, load_frozen

    ctx = chain.Context(cfg, landing=True)
    try:
        chain.run(ctx, ["ingest", "build", "verify"])
        _say_verified(ctx.verified)
        t = time.monotonic()
        moved = _leave_tainted(cfg)
        action, run_dir, why = plan(cfg, ctx.snapshot.version)
        chain.log("plan", action, t, reason=why, run=run_dir.name if run_dir else None, rolled_back=moved)
        code = EXIT_OK
        if action in ("train", "eval"):
            with open_dict(cfg):
                cfg.run_id = run_dir.name if run_dir else "auto"
            if action == "train" and run_dir is None:
                cfg, _ = fix_run_dir(cfg)
            elif run_dir is not None and (run_dir / FROZEN).exists():
                with open_dict(cfg):
                    cfg.resolved = load_frozen(run_dir / FROZEN).get("resolved") or cfg.resolved
            ctx.cfg = cfg
            ctx.run_dir = run_dir if action == "eval" else None
            chain.run(ctx, ["train", "eval", "promote"] if action == "train" else ["eval", "promote"])
            r = ctx.result
            code = EXIT_OK if r.get("promoted") else EXIT_NOT_PROMOTED
            if code == EXIT_OK:
                alias = "canary (the live check decides)" if (cfg.get("online") or {}).get("enabled") else "production"
                print(f"nightly: promoted {ctx.run_dir.name} to {alias}", file=sys.stderr)
            else:
                print(f"nightly: {ctx.run_dir.name} was not promoted ({r['decision']})", file=sys.stderr)
                for reason in r["reasons"]:
                    print(f"  - {reason}", file=sys.stderr)
        else:
            print(f"nightly: nothing to do: {why}", file=sys.stderr)
        if cfg.nightly.dashboard:
            chain.run(ctx, ["dashboard"])
            print(f"nightly: dashboard: {Path(str(cfg.nightly.dashboard)).resolve() / 'index.html'}", file=sys.stderr)
        return code
    except Exception as e:  # noqa: BLE001 - the failed stage's JSON line says which and why; rerun resumes
        print(f"nightly: failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
