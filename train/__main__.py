"""`python -m train +exp=NAME [overrides]`: compose, build or reuse the snapshot, train, eval.

    python -m train +exp=smoke                                  # tiny model, SFT then DPO, CPU, < 1 min
    python -m train +exp=sft_lora_smollm2 method.args.max_steps=30
    python -m train +exp=smoke method.args.beta=0.05            # any TRL config field
    python -m train +exp=smoke launcher=ddp launcher.nproc_per_node=2     # 2 ranks (gloo on CPU)
    python -m train +exp=smoke peft=lora launcher=zero3                  # DeepSpeed ZeRO-3 + LoRA
    RUN_ID=$SLURM_JOB_ID NNODES=2 NODE_RANK=$SLURM_NODEID MASTER_ADDR=node0 \\
        python -m train +exp=NAME launcher=zero3                         # every node, one run dir
    python -m train +exp=smoke stages=[eval] run_id=20260101-120000      # eval an existing run
    python -m train +exp=smoke --cfg                                     # print the resolved config

Order: compose `conf/` once (Hydra), validate it (unknown TRL/LoRA fields, QLoRA without
CUDA, missing trackers: all before any model loads), fix the run directory once
(`run_id=auto` resumes the newest unfinished run of the same exp and config), build or
reuse the snapshot, freeze the resolved config to `run_dir/config.yaml`, start the
workers on it (this process, accelerate or torchrun), then write the manifest and run
the eval stage (`eval.harness.evaluate`) when it is installed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from omegaconf import OmegaConf, open_dict


def _ensure_model(cfg) -> None:
    """Build the tiny model or fetch SmolLM2 when `model.kit` names it and it is missing."""
    path, kit = Path(str(cfg.model.name_or_path)), cfg.model.get("kit")
    if path.exists() or not kit:
        return
    from train.models import build_tiny, fetch

    if kit == "tiny":
        print(f"train: building the tiny model kit at {path}")
        build_tiny(path)
    else:
        fetch(str(kit), path)


def _run_eval(cfg) -> dict | None:
    try:
        from eval.harness import evaluate
    except ImportError as e:
        print(f"train: eval stage skipped ({e}); eval.harness is not installed yet")
        return None
    return evaluate(cfg, str(cfg.run_dir))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        from train.config import CONF_DIR

        print(__doc__)
        print("Config groups (conf/<group>/<option>.yaml; pick with group=option, exp with +exp=):")
        for group in ("exp", "method", "peft", "model", "data", "launcher", "eval", "gate"):
            options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
            print(f"  {group:9s} {', '.join(options)}")
        return 0
    show_only = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    started = time.time()

    from hydra.errors import HydraException

    from train.config import ConfigError, compose, validate
    from train.rundir import FROZEN, fix_run_dir, freeze, load_frozen, wait_for_frozen

    try:
        cfg = compose(overrides)
    except HydraException as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    if show_only:
        print(OmegaConf.to_yaml(cfg, resolve=True))
        return 0
    try:
        validate(cfg)
    except ConfigError as e:
        print(f"train: {e}", file=sys.stderr)
        return 2

    cfg, resumed = fix_run_dir(cfg)
    stages = list(cfg.stages)
    launcher = cfg.launcher
    if launcher.get("tool", "local") != "local" and int(launcher.get("machine_rank", 0)) > 0:
        # nodes > 0: node 0 resolves and freezes; this node starts its ranks on that file
        from train.launch import launch

        frozen_cfg = wait_for_frozen(cfg)
        with open_dict(frozen_cfg):
            frozen_cfg.launcher.machine_rank = int(launcher.machine_rank)   # this node's rank
        launch(frozen_cfg, Path(cfg.run_dir) / FROZEN)
        return 0

    run_dir = Path(cfg.run_dir)
    if resumed:
        previous = load_frozen(run_dir / FROZEN)
        print(f"train: resuming run {run_dir}")
        if previous.get("resolved"):
            with open_dict(cfg):
                cfg.resolved = previous.resolved
    if "train" in stages and not (cfg.get("resolved") or {}).get("snapshot"):
        if "build" not in stages and not cfg.get("snapshot"):
            print("train: stages has no build and no snapshot= was given", file=sys.stderr)
            return 2
        from train.snapshots import resolve

        freeze(cfg)          # the run exists (and is resumable) from here on
        ref = resolve(cfg)
        with open_dict(cfg):
            cfg.resolved = {"snapshot": {"version": ref.version, "path": ref.path}}
        print(f"train: snapshot {ref.version} at {ref.path}")
    elif "build" in stages and "train" not in stages:
        from train.snapshots import resolve

        ref = resolve(cfg)
        print(f"train: snapshot {ref.version} at {ref.path}")

    if "train" in stages:
        from train.launch import launch
        from train.outputs import write_manifest

        frozen = freeze(cfg)
        _ensure_model(cfg)
        launch(cfg, frozen)
        manifest = write_manifest(cfg, started)
        print(f"train: run finished: {run_dir} (global step "
              f"{manifest['metrics'].get('global_step')}, {manifest['wall_time_s']:.1f} s)")
    if "eval" in stages:
        if not (run_dir / "manifest.json").exists():
            print(f"train: no finished run at {run_dir} to evaluate", file=sys.stderr)
            return 2
        decision = _run_eval(load_frozen(run_dir / FROZEN) if (run_dir / FROZEN).exists() else cfg)
        if decision is not None:
            import json

            manifest_path = run_dir / "manifest.json"
            manifest = json.loads(manifest_path.read_text())
            manifest["eval"] = {"decision": decision.get("decision")}
            from train.rundir import write_json

            write_json(manifest_path, manifest)
            print(f"train: eval decision: {decision.get('decision')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
