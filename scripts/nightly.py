"""The scheduled job: ingest → build → (skip?) → train → eval → gate → promote → dashboard.

    python -m scripts.nightly +exp=demo                      # what cron / CronJob / Slurm run
    python -m scripts.nightly +exp=demo nightly.min_new_interactions=500
    python -m scripts.nightly +exp=demo launcher=ddp          # training through the launcher

Idempotent and resumable: ingest takes only files not ingested before (content
hash), the build reuses an identical snapshot, a snapshot that already has a
trained and evaluated run is "nothing to do", a finished but unevaluated run is
only evaluated, and an interrupted training resumes from its last checkpoint
(`python -m train` finds the unfinished run of the same config).

One JSON line per stage goes to stdout (`{"stage": ..., "status": ..., "seconds": ...}`).
Exit codes:
    0  promoted, or nothing to do (no new signal, or this snapshot was already handled)
    3  the candidate was trained and evaluated but not promoted (reject or inconclusive)
    4  another nightly run holds the lock; nothing was done
    2  bad configuration
    1  any other failure (the stage's JSON line says which and why)
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

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_NOT_PROMOTED, EXIT_LOCKED = 0, 1, 2, 3, 4
NIGHTLY_DEFAULTS = {
    "landing": "data/landing",          # folder the product writes its logs into
    "min_new_interactions": 50,         # below this many new interactions since the last trained snapshot: skip
    "lock": "${output_root}/nightly.lock",
    "dashboard": "dashboard",           # where the static dashboard is written (null: skip)
    "simulate": None,                   # demo only: {days, per_day, seed} fills an empty landing folder
}


class Locked(RuntimeError):
    """Another nightly run holds the lock."""


def log(stage: str, status: str, started: float, **fields) -> dict:
    """One machine-readable line per stage (timings and counts)."""
    line = {"stage": stage, "status": status, "seconds": round(time.monotonic() - started, 2), **fields}
    print(json.dumps(line, default=str), flush=True)
    return line


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


def compose(overrides: list[str]):
    """The training config plus the `nightly` node (defaults above, overridable)."""
    from train.config import compose as compose_train

    cfg = compose_train(overrides)
    node = OmegaConf.merge(OmegaConf.create(NIGHTLY_DEFAULTS), cfg.get("nightly") or {})
    OmegaConf.set_struct(cfg, False)
    cfg.nightly = node
    return cfg


# ----------------------------------------------------------------------------- stages


def stage_ingest(cfg) -> dict:
    from signals.ingest import ingest_paths

    landing = Path(str(cfg.nightly.landing))
    if cfg.nightly.simulate and not any(landing.glob("*")):
        from scripts.simulate import simulate

        simulate(landing, **OmegaConf.to_container(cfg.nightly.simulate))
    if not landing.is_dir() or not any(landing.iterdir()):
        return {"files": 0, "note": f"landing folder {landing} is empty"}
    summary = ingest_paths([str(landing)], db=str(cfg.store))
    keep = ("skipped_files", "records", "interactions", "feedback", "duplicates", "pending", "quarantined")
    return ({"files": len(summary["files"])} | {k: summary[k] for k in keep if k in summary}
            | {"quarantine": summary.get("quarantine", {})})


def stage_build(cfg):
    from signals.build import build_snapshot

    recipe = OmegaConf.to_container(cfg.data, resolve=True)
    return build_snapshot(recipe, str(cfg.store), str(cfg.snapshot_root), progress=False)


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


def new_interactions(cfg, version: str, since: str | None) -> int:
    """Interactions in snapshot `version` that the snapshot `since` did not hold."""
    from signals.store import open_store

    con = open_store(str(cfg.store))
    try:
        if since is None:
            return con.execute("SELECT count(DISTINCT interaction_id) FROM snapshot_members WHERE version = ?",
                               [version]).fetchone()[0]
        return con.execute(
            "SELECT count(DISTINCT interaction_id) FROM snapshot_members WHERE version = ? "
            "AND interaction_id NOT IN (SELECT interaction_id FROM snapshot_members WHERE version = ?)",
            [version, since]).fetchone()[0]
    finally:
        con.close()


def plan(cfg, version: str) -> tuple[str, Path | None, str]:
    """What to do with this snapshot: ('done'|'eval'|'train'|'skip', run dir, why)."""
    runs = runs_of(cfg)
    for run_dir, manifest in runs:
        if manifest and manifest.get("snapshot_version") == version:
            if (manifest.get("eval") or {}).get("decision"):
                return "done", run_dir, f"snapshot {version} was already trained and evaluated ({run_dir.name})"
            return "eval", run_dir, f"run {run_dir.name} finished training but was not evaluated"
        if manifest is None and _frozen_snapshot(run_dir) == version:
            return "train", run_dir, f"resuming unfinished run {run_dir.name}"
    trained = next((m.get("snapshot_version") for _, m in runs if m), None)
    new = new_interactions(cfg, version, trained)
    if trained is not None and new < int(cfg.nightly.min_new_interactions):
        return "skip", None, (f"{new} new interactions since the last trained snapshot {trained} "
                              f"(< nightly.min_new_interactions={cfg.nightly.min_new_interactions})")
    return "train", None, f"{new} new interactions since {'the last trained snapshot ' + trained if trained else 'the start'}"


def stage_train_eval(overrides: list[str], run_dir: Path | None, action: str, version: str) -> dict:
    """Run `python -m train` in this process: train (resuming) + eval, or eval only."""
    from train.__main__ import main as train_main

    args = [*overrides, f"snapshot={version}"]
    if action == "eval":
        args += ["stages=[eval]", f"run_id={run_dir.name}"]
    else:
        args += ["stages=[train,eval]"]
    code = train_main(args)
    if code != 0:
        raise RuntimeError(f"python -m train {' '.join(args)} exited {code}")
    return {"args": args}


def latest_decision(cfg) -> tuple[Path, dict]:
    run_dir, manifest = next((r, m) for r, m in runs_of(cfg) if m)
    examples = sorted(Path(run_dir).glob("eval/*/decision.json"))
    decision = json.loads(examples[-1].read_text()) if examples else dict(manifest.get("eval") or {})
    return run_dir, decision


def stage_dashboard(cfg) -> dict:
    from eval.dashboard.build import build_site

    pages = build_site(str(cfg.store), str(cfg.nightly.dashboard))
    return {"pages": len(pages), "index": str(Path(str(cfg.nightly.dashboard)).resolve() / "index.html")}


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return EXIT_OK
    t = time.monotonic()
    try:
        cfg = compose(argv)
    except Exception as e:  # Hydra/OmegaConf errors: say which override is wrong
        log("config", "failed", t, error=f"{type(e).__name__}: {e}")
        return EXIT_CONFIG
    try:
        with run_lock(OmegaConf.to_container(cfg.nightly, resolve=True)["lock"]):
            return _pipeline(cfg, argv)
    except Locked as e:
        log("lock", "busy", t, error=str(e))
        print(f"nightly: {e}", file=sys.stderr)
        return EXIT_LOCKED


def _pipeline(cfg, overrides: list[str]) -> int:
    stage = "ingest"
    t = time.monotonic()
    try:
        log("ingest", "ok", t, **stage_ingest(cfg))
        stage, t = "build", time.monotonic()
        snap = stage_build(cfg)
        log("build", "ok", t, version=snap.version, counts=snap.manifest.get("counts"))
        stage, t = "plan", time.monotonic()
        action, run_dir, why = plan(cfg, snap.version)
        log("plan", action, t, reason=why, run=run_dir.name if run_dir else None)
        code = EXIT_OK
        if action in ("train", "eval"):
            stage, t = "train+eval" if action == "train" else "eval", time.monotonic()
            stage_train_eval(overrides, run_dir, action, snap.version)
            run_dir, decision = latest_decision(cfg)
            promoted = decision.get("decision") == "promote"
            log(stage, decision.get("decision", "unknown"), t, run=run_dir.name,
                promoted=bool(decision.get("promoted", promoted)), reasons=decision.get("reasons"))
            code = EXIT_OK if promoted else EXIT_NOT_PROMOTED
        if action in ("done", "skip"):
            print(f"nightly: nothing to do: {why}", file=sys.stderr)
        elif code == EXIT_OK:
            print(f"nightly: promoted {run_dir.name} to production", file=sys.stderr)
        else:
            print(f"nightly: {run_dir.name} was not promoted ({decision.get('decision')})", file=sys.stderr)
        if cfg.nightly.dashboard:
            stage, t = "dashboard", time.monotonic()
            built = stage_dashboard(cfg)
            log("dashboard", "ok", t, **built)
            print(f"nightly: dashboard: {built['index']}", file=sys.stderr)
        return code
    except Exception as e:
        log(stage, "failed", t, error=f"{type(e).__name__}: {e}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
