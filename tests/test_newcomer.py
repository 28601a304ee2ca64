"""What a new user trips on (issue 19), each as a test of a command's output and exit code.

One real `python -m train +exp=smoke` (tiny model, simulated logs through ingest, build,
SFT then DPO, eval, gate) is run once for the module; the other checks are cheap.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def smoke(tmp, model_dir, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = ["+exp=smoke", f"model.name_or_path={model_dir}", "--store", f"{tmp}/signal.duckdb",
            f"snapshot_root={tmp}/snapshots", f"output_root={tmp}/runs", "tracking.report_to=[]",
            "eval.generation.max_prompts=6", "eval.generation.max_new_tokens=8", "eval.bootstrap.resamples=200",
            *extra]
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("smoke")
    return tmp, smoke(tmp, tiny_model_dir)


def test_end_of_run_prints_the_decision_its_reasons_and_where_the_report_is(smoke_run):
    tmp, res = smoke_run
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "train: gate decision: " in out
    reasons = out.split("train: gate decision: ", 1)[1].splitlines()[1:]
    assert reasons and reasons[0].startswith("  - ") and "CI [" in reasons[0]     # the gate's reasons
    assert "train: per-example results: " in out and "python -m eval dashboard --store" in out
    assert "model card: " in out
    card = next((tmp / "runs" / "smoke").glob("*/README.md")).read_text()
    assert card.index("Promotion gate") < card.index("Training-time metrics")     # the gate's figures first


def test_empty_generated_answers_are_named_not_silent(smoke_run):
    _, res = smoke_run
    assert "generated answers are empty" in res.stdout                 # the tiny model answers nothing


def test_the_console_is_one_line_per_stage_without_library_noise(smoke_run):
    _, res = smoke_run
    both = res.stdout + res.stderr
    for stage in ("ingest", "build", "train", "eval", "promote"):
        assert f"train: {stage}" in res.stdout
    for noise in ("FutureWarning", "real_accelerator", "Tokenizing train dataset", "Loading weights",
                  "TRLExperimentalWarning"):
        assert noise not in both, noise


def test_quiet_shows_no_progress_bar(tmp_path, tiny_model_dir):
    res = smoke(tmp_path, tiny_model_dir, "--quiet", "stages=[ingest,build,train]", "method.args.max_steps=2",
                "then.dpo.args.max_steps=1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "it/s" not in res.stderr and "%|" not in res.stderr and "s/it" not in res.stderr
    assert "train: train" in res.stdout


def test_an_empty_eval_split_is_a_warning_at_build(tmp_path, capsys):
    from signals.__main__ import main

    store = tmp_path / "s.duckdb"
    assert main(["ingest", str(ROOT / "tests" / "data" / "native_example.jsonl"), "--store", str(store)]) == 0
    capsys.readouterr()
    assert main(["build", "data=smoke", "split.eval_fraction=0.0", f"snapshot_root={tmp_path}/snaps",
                 "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "warning: the pref eval split is empty" in out


def test_an_unknown_quarantine_reason_is_an_error_listing_the_known_ones(tmp_path, capsys):
    from signals.__main__ import main

    store = tmp_path / "s.duckdb"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"interaction_id": "x"\n')
    assert main(["ingest", str(bad), "--store", str(store)]) == 0
    capsys.readouterr()
    assert main(["quarantine", "--reason", "malformed_jsn", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "did you mean malformed_json" in err and "malformed_json (1)" in err


def test_a_snapshot_whose_folder_was_deleted_is_listed_as_missing(tmp_path, capsys):
    import shutil

    from signals.__main__ import main

    store = tmp_path / "s.duckdb"
    assert main(["ingest", str(ROOT / "tests" / "data" / "native_example.jsonl"), "--store", str(store)]) == 0
    assert main(["build", "data=smoke", f"snapshot_root={tmp_path}/snaps", "--store", str(store)]) == 0
    shutil.rmtree(tmp_path / "snaps")
    capsys.readouterr()
    assert main(["snapshots", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "missing:" in out and " ok" not in out
