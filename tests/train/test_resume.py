"""A run killed after its first checkpoint resumes when the same command is rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_sigkill_after_first_checkpoint_then_rerun_resumes(run_overrides, tmp_path):
    cmd = [sys.executable, "-m", "train", "+exp=sft_lora_tiny", *run_overrides,
           "method.args.max_steps=30", "method.args.save_steps=5", "method.args.logging_steps=5",
           "tracking.report_to=[]"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}   # steady on a busy CPU
    exp_dir = tmp_path / "runs" / "sft_lora_tiny"
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    ckpt = None
    while time.monotonic() < deadline and first.poll() is None:
        found = list(exp_dir.glob("*/stages/0-sft/checkpoints/checkpoint-*/trainer_state.json"))
        if found:
            ckpt = found[0].parent
            break
        time.sleep(0.02)
    assert ckpt is not None and first.poll() is None, "no checkpoint before the run ended"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    run_dir = ckpt.parents[3]
    assert not (run_dir / "manifest.json").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in ckpt.parent.glob("checkpoint-*")
                    if (p / "trainer_state.json").exists())
    assert killed_at < 30

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming run {run_dir}" in again.stdout
    runs = [p for p in exp_dir.iterdir() if p.is_dir()]
    assert runs == [run_dir], "the rerun started a new run directory"
    assert len(list(exp_dir.glob("*/manifest.json"))) == 1
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stage = manifest["stages"][0]["metrics"]
    assert manifest["resumed"] is True and stage["resumed_from"].endswith(f"checkpoint-{killed_at}")
    assert stage["global_step"] == 30
    steps = [e["step"] for e in json.loads((run_dir / "stages/0-sft/trainer_state.json").read_text())
             ["log_history"] if "loss" in e]
    assert steps == list(range(5, 31, 5)), steps   # history continues, no step logged twice
