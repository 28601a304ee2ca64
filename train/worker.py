"""The per-rank entry point: `python -m train.worker RUN_DIR/config.yaml`.

Launchers (accelerate launch, torchrun) start this on every rank with the config
the parent froze; nothing here composes Hydra or picks a run directory.
"""

from __future__ import annotations

import sys


def run_worker(frozen_path: str) -> None:
    import torch

    from train.console import configure

    configure()

    from train.rundir import load_frozen
    from train.runner import run_stages

    cfg = load_frozen(frozen_path)
    try:
        run_stages(cfg)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m train.worker RUN_DIR/config.yaml")
    run_worker(sys.argv[1])
