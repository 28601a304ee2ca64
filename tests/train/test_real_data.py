"""A real-data experiment runs from raw upstream files: ingest, build, train (tiny model)."""

from __future__ import annotations

import json

import pytest

from train.__main__ import main


@pytest.mark.slow
def test_real_exp_ingests_builds_and_trains(real_data, tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("signals.build")
    monkeypatch.setenv("REAL_DATA", str(real_data))
    rc = main(["+exp=sft_lora_smollm2_mlqe-pe", "model=tiny", f"model.name_or_path={tiny_model_dir}",
               f"output_root={tmp_path / 'runs'}", f"snapshot_root={tmp_path / 'snaps'}",
               f"store={tmp_path / 'store.duckdb'}", "stages=[ingest,build,train]",
               "method.args.max_steps=1", "method.args.max_length=128", "tracking.report_to=[]"])
    assert rc == 0
    (manifest_path,) = (tmp_path / "runs").rglob("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["snapshot_version"].startswith("mlqe-pe")
    snap = json.loads((tmp_path / "snaps" / manifest["snapshot_version"] / "manifest.json").read_text())
    assert snap["counts"]["sft"]["train"] > 100
    assert manifest["metrics"]["global_step"] == 1
