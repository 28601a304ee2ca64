"""The scheduled job on the tiny model: promotes, then no-op; lock; kill + resume; flipped signal rejected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.nightly import EXIT_LOCKED, EXIT_NOT_PROMOTED, EXIT_OK, run_lock
from tests.conftest import ROOT


def overrides(tmp: Path, model_dir: Path, *, flip: bool = False, **extra) -> list[str]:
    sim = f"{{days:3,per_day:150,seed:0,flip:{str(flip).lower()}}}"
    args = ["+exp=demo", "model=tiny", f"model.name_or_path={model_dir}",
            f"store={tmp}/signal.duckdb", f"snapshot_root={tmp}/snapshots", f"output_root={tmp}/runs",
            f"nightly.landing={tmp}/landing", f"nightly.dashboard={tmp}/dashboard",
            f"nightly.lock={tmp}/nightly.lock", f"nightly.simulate={sim}",
            "method=dpo", "method.args.learning_rate=5e-3", "method.args.num_train_epochs=3",
            "gate.primary=preference_accuracy_norm", "gate.margin=0.05",
            "method.args.per_device_train_batch_size=16", "method.args.save_steps=4",
            "method.args.max_length=128", "tracking.report_to=[]",
            "eval.generation.max_prompts=24", "eval.generation.max_new_tokens=16",
            "eval.bootstrap.resamples=300"]
    return args + [f"{k}={v}" for k, v in extra.items()]


def nightly(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "scripts", "nightly", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


def stages(out: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"stage"')]
    return {line["stage"]: line for line in lines}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("nightly")
    args = overrides(tmp, tiny_model_dir)
    return tmp, args, nightly(args)


def test_first_run_trains_evaluates_promotes_and_builds_the_dashboard(first_run):
    tmp, _, res = first_run
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    log = stages(res.stdout)
    assert {"ingest", "build", "plan", "train", "eval", "promote", "dashboard"} <= set(log), res.stdout
    assert log["ingest"]["interactions"] > 0 and log["ingest"]["quarantined"] > 0   # malformed lines
    assert log["plan"]["status"] == "train"
    assert log["eval"]["decision"] == "promote" and log["promote"]["promoted"]
    assert (tmp / "runs" / "production.json").exists()
    assert (tmp / "dashboard" / "index.html").exists()
    assert all(isinstance(line["seconds"], float | int) for line in log.values())


def test_second_run_with_no_new_logs_does_nothing(first_run):
    tmp, args, _ = first_run
    runs_before = sorted((tmp / "runs" / "demo").iterdir())
    res = nightly(args)
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    log = stages(res.stdout)
    assert log["ingest"]["skipped_files"] == log["ingest"]["files"]
    assert log["plan"]["status"] == "done"
    assert "nothing to do" in res.stderr
    assert "train" not in log and "eval" not in log
    assert sorted((tmp / "runs" / "demo").iterdir()) == runs_before


def test_a_new_day_below_the_threshold_is_skipped(first_run):
    from scripts.simulate import simulate

    tmp, args, _ = first_run
    from datetime import date

    simulate(tmp / "landing", days=1, per_day=10, seed=5, start=date(2026, 12, 1))
    res = nightly(args + ["nightly.min_new_interactions=1000"])
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    assert stages(res.stdout)["plan"]["status"] == "skip"


@pytest.mark.slow
def test_overlapping_runs_and_a_killed_run_resumes(tmp_path, tiny_model_dir):
    args = overrides(tmp_path, tiny_model_dir, **{"method.args.num_train_epochs": 6})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", "scripts", "nightly", *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "runs").glob("demo/*/stages/*/checkpoints/checkpoint-*/trainer_state.json")):
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.5)
        second = nightly(args)                      # overlaps: refused, nothing touched
        assert second.returncode == EXIT_LOCKED, second.stdout + second.stderr
        assert "another nightly run holds" in second.stderr
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    run_dirs = list((tmp_path / "runs" / "demo").iterdir())
    assert len(run_dirs) == 1 and not (run_dirs[0] / "manifest.json").exists()

    again = nightly(args)                           # the lock died with the process
    assert again.returncode in (EXIT_OK, EXIT_NOT_PROMOTED), again.stdout + again.stderr
    assert stages(again.stdout)["plan"]["status"] == "train"
    assert "resuming" in stages(again.stdout)["plan"]["reason"]
    assert list((tmp_path / "runs" / "demo").iterdir()) == run_dirs
    manifest = json.loads((run_dirs[0] / "manifest.json").read_text())
    assert manifest["snapshot_version"]


def test_lock_held_means_exit_3(tmp_path, tiny_model_dir):
    args = overrides(tmp_path, tiny_model_dir)
    with run_lock(tmp_path / "nightly.lock"):
        res = nightly(args)
    assert res.returncode == EXIT_LOCKED
    assert "another nightly run holds" in res.stderr and f"pid {os.getpid()}" in res.stderr
    assert not (tmp_path / "signal.duckdb").exists()


@pytest.mark.slow
def test_a_candidate_trained_on_flipped_signal_is_rejected(first_run, tmp_path, tiny_model_dir):
    """Trained where users prefer the plain answers, judged on the real product's eval split."""
    tmp, _, _ = first_run
    true_snapshot = next(p for p in (tmp / "snapshots").iterdir() if (p / "manifest.json").exists())
    args = overrides(tmp_path, tiny_model_dir, flip=True, **{"eval.snapshot": str(true_snapshot)})
    res = nightly(args)
    assert res.returncode == EXIT_NOT_PROMOTED, res.stdout + res.stderr
    assert stages(res.stdout)["eval"]["decision"] == "reject"
