"""Start the workers on the frozen config: in this process, or via accelerate / torchrun.

`accelerate launch --cpu --num_processes 2` silently starts ONE process (STACK.md), so
multi-process runs on CPU use the MULTI_GPU/DEEPSPEED accelerate configs (gloo ranks)
with `use_cpu=True` in the TRL args (set by train/runner.py when CUDA is absent).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from train.config import CONF_DIR


def nproc_per_node(launcher: DictConfig) -> int:
    """`auto`: one process per visible CUDA device, 2 on a CPU machine."""
    value = launcher.get("nproc_per_node", "auto")
    if str(value) != "auto":
        return int(value)
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 2


def worker_command(cfg: DictConfig, frozen: Path) -> list[str] | None:
    """The command every node runs (None: run in this process)."""
    launcher = cfg.launcher
    tool = launcher.get("tool", "local")
    if tool == "local":
        return None
    nproc, nodes = nproc_per_node(launcher), int(launcher.num_machines)
    rank, addr, port = int(launcher.machine_rank), str(launcher.main_address), int(launcher.main_port)
    if tool == "accelerate":
        return [sys.executable, "-m", "accelerate.commands.launch",
                "--config_file", str(CONF_DIR / "accelerate" / f"{launcher.accelerate_config}.yaml"),
                "--num_processes", str(nproc * nodes), "--num_machines", str(nodes),
                "--machine_rank", str(rank), "--main_process_ip", addr,
                "--main_process_port", str(port), "-m", "train.worker", str(frozen)]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--nnodes", str(nodes), "--node_rank", str(rank), "--master_addr", addr,
            "--master_port", str(port), "-m", "train.worker", str(frozen)]


def launch(cfg: DictConfig, frozen: Path) -> None:
    """Run the training workers to completion; raise SystemExit with their status on failure."""
    cmd = worker_command(cfg, frozen)
    if cmd is None:
        from train.worker import run_worker

        run_worker(str(frozen))
        return
    print("train: launching " + " ".join(cmd), flush=True)
    env = {**os.environ, "RUN_ID": str(cfg.run_id), "PYTHONPATH": os.pathsep.join(
        p for p in (str(CONF_DIR.parent), os.environ.get("PYTHONPATH")) if p)}
    rc = subprocess.run(cmd, env=env).returncode
    if rc != 0:
        raise SystemExit(f"train: workers failed (exit {rc}); rerun the same command to resume "
                         f"from the last checkpoint in {cfg.run_dir}")
