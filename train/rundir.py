"""One run directory per run (contract 2), fixed once by the parent and frozen for every rank.

This module owns the run directory: where it is, its frozen `config.yaml`, its
`manifest.json` (written by `train/outputs.py`) and `read_run`, which every reader
(eval, the scheduled job) goes through.

Hydra resolves `${now:...}` per process, so ranks started by a launcher can pick
different timestamped directories (hydra issues 2070, 1607, 2925). Here the parent
picks the run id once, writes the resolved config to `run_dir/config.yaml`, and the
workers read that file. Rerunning the same command finds the newest unfinished run
of the experiment with the same config and resumes it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from signals.manifest import read_manifest

FROZEN = "config.yaml"
MANIFEST = "manifest.json"
# keys that differ between two invocations of the same command
VOLATILE = ("run_id", "run_dir", "resolved", "stages")


def _comparable(plain: dict) -> dict:
    return {k: v for k, v in plain.items() if k not in VOLATILE}


def find_resumable(cfg: DictConfig) -> Path | None:
    """The newest run of this exp with no manifest yet and the same resolved config."""
    parent = Path(cfg.output_root) / str(cfg.exp_name)
    if not parent.is_dir():
        return None
    want = _comparable(OmegaConf.to_container(cfg, resolve=True))
    for run in sorted(parent.iterdir(), key=lambda p: p.name, reverse=True):
        frozen = run / FROZEN
        if not frozen.exists() or (run / MANIFEST).exists():
            continue
        try:
            have = yaml.safe_load(frozen.read_text()) or {}
        except yaml.YAMLError:
            continue
        if _comparable(have) == want:
            return run
    return None


def fix_run_dir(cfg: DictConfig) -> tuple[DictConfig, bool]:
    """Set run_id/run_dir once; return (cfg, resumed). Explicit ids (RUN_ID, run_id=) win."""
    explicit = str(cfg.run_id) != "auto"
    resumed = False
    if explicit:
        run_id = str(cfg.run_id)
        resumed = (Path(cfg.output_root) / str(cfg.exp_name) / run_id / FROZEN).exists()
    else:
        found = find_resumable(cfg) if cfg.get("resume", True) else None
        if found is not None:
            run_id, resumed = found.name, True
        else:
            run_id = datetime.now().strftime("%Y%m%d-%H%M%S")
            base = Path(cfg.output_root) / str(cfg.exp_name)
            n = 1
            while (base / (run_id if n == 1 else f"{run_id}-{n}")).exists():
                n += 1
            run_id = run_id if n == 1 else f"{run_id}-{n}"
    with open_dict(cfg):
        cfg.run_id = run_id
    return cfg, resumed


def freeze(cfg: DictConfig) -> Path:
    """Write the resolved config to run_dir/config.yaml (atomically); return its path."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / FROZEN
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))))
    tmp.replace(path)
    return path


def load_frozen(path: str | Path) -> DictConfig:
    """What every worker reads: the parent's resolved config, no Hydra involved."""
    return OmegaConf.load(str(path))


def wait_for_frozen(cfg: DictConfig, timeout_s: float = 600) -> DictConfig:
    """Nodes other than 0 of a multi-node run wait for node 0 to freeze the config."""
    path = Path(cfg.run_dir) / FROZEN
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s:.0f} s: is node 0 running "
                               "with the same RUN_ID and a shared output_root?")
        time.sleep(2)
    return load_frozen(path)


def write_json(path: Path, data: dict) -> None:
    """Atomic JSON write (a crash never leaves half a manifest)."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


class RunError(ValueError):
    """A run directory that is missing or incomplete; the message names the file and field."""


@dataclass
class Run:
    run_id: str
    exp_name: str | None
    method: str | None
    run_dir: Path
    base_model: str | None
    snapshot_version: str | None
    snapshot_path: str | None
    peft: bool
    model_path: Path | None      # run_dir/model when saved (full or merged)
    adapter_path: Path | None    # run_dir/adapter when LoRA
    manifest: dict

    @property
    def serve_path(self) -> Path:
        return self.model_path or self.adapter_path


def read_run(run_dir: str | Path) -> Run:
    """Validate a finished run directory and its manifest.json; name what is missing."""
    d = Path(run_dir)
    if not d.is_dir():
        raise RunError(f"run directory {d} does not exist")
    mf = d / MANIFEST
    if not mf.is_file():
        raise RunError(f"{d}: no {MANIFEST} (not a finished run written by `python -m train`)")
    m = read_manifest(mf, RunError)
    arts = m.get("artifacts") or {}
    model = d / arts["model"] if arts.get("model") else None
    adapter = d / arts["adapter"] if arts.get("adapter") else None
    for field, p in (("artifacts.model", model), ("artifacts.adapter", adapter)):
        if p is not None and not p.is_dir():
            raise RunError(f"{mf} field {field!r}: {p} does not exist")
    if model is None and adapter is None:
        raise RunError(f"{mf} field 'artifacts': neither a model nor an adapter was saved")
    if model is None and not m.get("base_model"):
        raise RunError(f"{mf} field 'base_model': needed to load the adapter, but missing")
    return Run(run_id=str(m.get("run_id") or d.name), exp_name=m.get("exp_name"), method=m.get("method"),
               run_dir=d.resolve(), base_model=m.get("base_model"),
               snapshot_version=m.get("snapshot_version"), snapshot_path=m.get("snapshot_path"),
               peft=bool(m.get("peft")), model_path=model.resolve() if model else None,
               adapter_path=adapter.resolve() if adapter else None, manifest=m)
