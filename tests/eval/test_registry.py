"""Registry: aliases with history, pointer files, taint from revoked snapshots, CLI, mlflow."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from eval import EvalError
from eval.__main__ import main
from eval.metrics import Metric
from eval.registry import (
    alias_history,
    alias_target,
    list_runs,
    promote,
    record_evaluation,
    register_run,
    rollback,
    tainted,
)
from eval.runs import Run
from signals.store import open_store
from tests.conftest import ROOT


def _run(tmp_path: Path, run_id: str, snapshot="v1") -> Run:
    d = tmp_path / "runs" / "exp" / run_id
    (d / "model").mkdir(parents=True)
    m = {"run_id": run_id, "exp_name": "exp", "method": "dpo", "snapshot_version": snapshot,
         "base_model": "models/tiny", "peft": False, "artifacts": {"model": "model", "adapter": None}}
    (d / "manifest.json").write_text(json.dumps(m))
    return Run(run_id, "exp", "dpo", d, "models/tiny", snapshot, None, False, d / "model", None, m)


def _decide(con, run, decision, eval_id=None):
    metric = Metric("preference_accuracy", 0.5, 0.7, 0.2, 0.1, 0.3, 100, 0.05)
    record_evaluation(con, eval_id=eval_id or f"{run.run_id}-e", run_id=run.run_id, metrics=[metric],
                      decision={"decision": decision, "reasons": ["because"]}, gate_config={"primary": "x"},
                      eval_config={"batch_size": 16}, baseline="models/tiny", snapshot_version="v1",
                      examples_dir=None)


@pytest.fixture
def store(tmp_path):
    con = open_store(tmp_path / "s.duckdb")
    runs = {}
    for rid, dec in (("r1", "promote"), ("r2", "promote"), ("r3", "reject")):
        runs[rid] = _run(tmp_path, rid)
        register_run(con, runs[rid])
        _decide(con, runs[rid], dec)
    yield con, runs
    con.close()


def test_promote_and_rollback_keep_history_and_pointer(tmp_path, store):
    con, runs = store
    ptr = tmp_path / "runs"
    assert promote(con, "r1", pointer_dir=str(ptr)) == "r1"
    assert promote(con, str(runs["r2"].run_dir), pointer_dir=str(ptr)) == "r2"   # by run dir
    assert json.loads((ptr / "production.json").read_text())["run_id"] == "r2"
    assert rollback(con, pointer_dir=str(ptr)) == "r1"
    assert json.loads((ptr / "production.json").read_text())["model_path"].endswith("r1/model")
    assert rollback(con, pointer_dir=str(ptr)) is None                    # rollback pops, never toggles
    with pytest.raises(EvalError, match="nothing to roll back"):
        rollback(con)
    h = alias_history(con, "production")
    assert [(r["action"], r["run_id"], r["previous_run_id"]) for r in h] == [
        ("promote", "r1", None), ("promote", "r2", "r1"), ("rollback", "r1", "r2"), ("rollback", None, "r1")]
    assert h[0]["eval_id"] == "r1-e"


def test_promote_needs_a_promote_decision_or_a_forced_reason(store):
    con, _ = store
    with pytest.raises(EvalError, match="latest decision is 'reject'"):
        promote(con, "r3")
    with pytest.raises(EvalError, match="needs --reason"):
        promote(con, "r3", force=True)
    assert promote(con, "r3", force=True, reason="hotfix approved by oncall") == "r3"
    assert alias_history(con)[-1]["reason"] == "hotfix approved by oncall"
    with pytest.raises(EvalError, match="not in the registry"):
        promote(con, "ghost")


def test_revoked_snapshot_taints_runs_and_blocks_promotion(tmp_path, store):
    con, _ = store
    promote(con, "r1")
    from signals.snapshot import revoke

    con.execute("INSERT INTO snapshots (version, recipe_name, path, manifest, created_at) "
                "VALUES ('v1', 'demo', ?, '{}', now())", [str(tmp_path / "snap")])
    assert revoke(con, ["v1"], "signals forget u3") == ["v1"]
    assert tainted(con, "r2")[0] and "signals forget u3" in tainted(con, "r2")[1]
    listed = {r["run_id"]: r for r in list_runs(con)}
    assert listed["r1"]["tainted"] and listed["r1"]["aliases"] == ["production"]
    with pytest.raises(EvalError, match="tainted"):
        promote(con, "r2")
    assert alias_target(con) == "r1"


def test_cli_registry_promote_rollback(tmp_path, store, capsys):
    con, _ = store
    con.close()                                             # the CLI opens the store itself
    db = str(tmp_path / "s.duckdb")
    assert main(["promote", "r1", "--store", db, "--pointer-dir", str(tmp_path / "p")]) == 0
    assert main(["promote", "r3", "--store", db]) == 2
    assert "latest decision is 'reject'" in capsys.readouterr().err
    assert main(["registry", "--json", "--store", db]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["run_id"]: r["aliases"] for r in out["runs"]} == {"r1": ["production"], "r2": [], "r3": []}
    assert main(["registry", "--store", db]) == 0
    assert "production -> r1  (1 moves" in capsys.readouterr().out
    assert main(["rollback", "--store", db, "--pointer-dir", str(tmp_path / "p")]) == 0
    assert json.loads((tmp_path / "p" / "production.json").read_text())["run_id"] is None


def test_registry_cli_does_not_import_torch(tmp_path):
    open_store(tmp_path / "s.duckdb").close()
    code = ("import sys, runpy; sys.argv = ['eval', 'registry', '--store', sys.argv[1]]\n"
            "try:\n    runpy.run_module('eval', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.duckdb")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "no runs registered" in r.stdout


def test_registry_refuses_a_missing_store_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "missing.duckdb"
    assert main(["registry", "--store", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err and not missing.exists()


def test_mlflow_logging_uses_aliases(tmp_path, monkeypatch):
    calls = []

    class Client:
        def get_registered_model(self, name):
            raise RuntimeError("not found")

        def create_registered_model(self, name):
            calls.append(("create", name))

        def create_model_version(self, name, source, run_id, tags):
            calls.append(("version", name, source))
            return types.SimpleNamespace(version="1")

        def set_registered_model_alias(self, name, alias, version):
            calls.append(("alias", name, alias, version))

    class Active:
        info = types.SimpleNamespace(run_id="mlrun")

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    fake = types.ModuleType("mlflow")
    fake.MlflowClient = Client
    fake.set_experiment = lambda name: calls.append(("experiment", name))
    fake.start_run = lambda run_name: Active()
    fake.set_tags = lambda tags: calls.append(("tags", tags["decision"]))
    fake.log_metric = lambda k, v: calls.append(("metric", k))
    fake.log_dict = lambda d, f: calls.append(("dict", f))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    from eval.tracking import log_to_mlflow

    run = _run(tmp_path, "r9")
    result = {"eval_id": "e9", "decision": "promote", "promoted": True, "baseline": "b", "snapshot_version": "v1"}
    assert log_to_mlflow(run, result, [Metric("preference_accuracy", 0.5, 0.7, 0.2, 0.1, 0.3, 100, 0.05)])
    assert ("alias", "exp", "production", "1") in calls and ("metric", "preference_accuracy.diff") in calls
    assert not any(c[0] == "stage" for c in calls)


def test_latest_run_is_the_newest_with_a_manifest(tmp_path):
    import os

    from eval.__main__ import latest_run

    with pytest.raises(EvalError, match="no run found under"):
        latest_run(str(tmp_path), "exp")
    old, new = _run(tmp_path, "old"), _run(tmp_path, "new")
    (tmp_path / "runs" / "exp" / "unfinished").mkdir()          # no manifest: not a run
    os.utime(old.run_dir / "manifest.json", (1, 1))
    os.utime(old.run_dir, (1, 1))
    os.utime(new.run_dir, (2e9, 2e9))
    assert latest_run(str(tmp_path / "runs"), "exp") == new.run_dir
