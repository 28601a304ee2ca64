"""Two CPU ranks (gloo): DDP and DeepSpeed ZeRO-3 + LoRA, each with one run dir and manifest."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(launcher: str, overrides: list[str], tmp_path):
    cmd = [sys.executable, "-m", "train", "+exp=sft_lora_tiny", *overrides, f"launcher={launcher}",
           "launcher.nproc_per_node=2", f"launcher.main_port={free_port()}", "tracking.report_to=[]"]
    env = {k: v for k, v in os.environ.items() if k not in ("RUN_ID", "NNODES", "NODE_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    runs = [p for p in (tmp_path / "runs" / "sft_lora_tiny").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def check_adapter(run, tiny_model_dir):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    manifests = list(run.rglob("manifest.json"))
    assert manifests == [run / "manifest.json"]
    manifest = json.loads(manifests[0].read_text())
    assert manifest["artifacts"]["adapter"] == "adapter"
    # 6 steps x 4 per device x 2 ranks = 48 of 32 examples: 1.5 epochs (one rank would give 0.75)
    assert manifest["metrics"]["epoch"] == pytest.approx(1.5)
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert weights and all(t.numel() > 0 for t in weights.values())
    assert any(t.abs().sum() > 0 for k, t in weights.items() if "lora_B" in k)   # it trained
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, run / "adapter")
    ids = torch.tensor([[1, 2, 3]])
    assert torch.isfinite(model(input_ids=ids).logits).all()


@pytest.mark.slow
def test_ddp_two_ranks(run_overrides, tmp_path, tiny_model_dir):
    check_adapter(run_two_ranks("ddp", run_overrides, tmp_path), tiny_model_dir)


@pytest.mark.slow
def test_deepspeed_zero3_lora_two_ranks(run_overrides, tmp_path, tiny_model_dir):
    """ZeRO-3 shards parameters: the adapter is saved only because the accelerate config sets
    zero3_save_16bit_model (stage3_gather_16bit_weights_on_model_save)."""
    run = run_two_ranks("zero3", run_overrides, tmp_path)
    check_adapter(run, tiny_model_dir)


@pytest.mark.slow
def test_two_nodes_share_one_frozen_run_dir(run_overrides, tmp_path, tiny_model_dir):
    """Two 'nodes' on localhost (1 rank each): node 1 waits for node 0's frozen config and
    joins with its own machine rank; one run dir, one manifest, 2 ranks' worth of data."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("RUN_ID", "NNODES", "NODE_RANK")}
    env = {**base, "OMP_NUM_THREADS": "1", "RUN_ID": "two-nodes", "NNODES": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}
    cmd = [sys.executable, "-m", "train", "+exp=sft_lora_tiny", *run_overrides, "launcher=ddp",
           "launcher.nproc_per_node=1", "tracking.report_to=[]"]
    # node 1's output goes to a file, not a pipe nobody reads while node 0 runs: a full pipe
    # would block node 1, and node 0 with it, in their first collective
    log1 = tmp_path / "node1.log"
    with open(log1, "w") as f:
        node1 = subprocess.Popen(cmd, cwd=ROOT, env={**env, "NODE_RANK": "1"}, stdout=f, stderr=subprocess.STDOUT)
        try:
            node0 = subprocess.run(cmd, cwd=ROOT, env={**env, "NODE_RANK": "0"}, capture_output=True,
                                   text=True, timeout=300)
        except subprocess.TimeoutExpired:
            node1.kill()
            pytest.fail("node 0 timed out; node 1 said:\n" + log1.read_text()[-3000:])
        node1.wait(timeout=120)
    out1 = log1.read_text()
    assert node0.returncode == 0, node0.stdout[-2000:] + node0.stderr[-3000:]
    assert node1.returncode == 0, out1[-3000:]
    assert "--machine_rank 1" in out1
    runs = [p for p in (tmp_path / "runs" / "sft_lora_tiny").iterdir() if p.is_dir()]
    assert [p.name for p in runs] == ["two-nodes"]
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert manifest["metrics"]["epoch"] == pytest.approx(1.5)   # 6 steps x 4 x 2 ranks / 32
