"""`python -m scripts results` on the tiny model and the smoke data: the page it writes holds
each metric with its interval and MDE, the gate's decision and why, the judge's agreement
with the users and the wall time, and a subset run keeps the other exps' sections."""

from __future__ import annotations

from scripts.__main__ import main
from scripts.results import EXPS, machine, read_records, render


def test_results_page_from_a_tiny_run_keeps_the_other_exps(tmp_path, tiny_model_dir):
    page = tmp_path / "results.md"
    earlier = {"data": "hh-rlhf", "exp": EXPS["hh-rlhf"], "device": "cpu", "status": "failed",
               "error": "RuntimeError: an earlier run", "started": "2026-01-01T00:00:00+00:00",
               "load_avg": [0.5, 0.5, 0.5], "seconds": {"total": 60.0}, "machine": machine()}
    page.write_text(render({"hh-rlhf@cpu": earlier}, "an earlier command"))

    code = main(["results", "--exps", "smoke", "--out", str(page), f"model.name_or_path={tiny_model_dir}",
                 f"store={tmp_path}/signal.duckdb", f"snapshot_root={tmp_path}/snaps", f"output_root={tmp_path}/runs",
                 "method.args.max_steps=2", "then.dpo.args.max_steps=1", "tracking.report_to=[]",
                 "eval.metrics=[preference,likelihood]", "eval.max_examples=30", "eval.latency.prompts=0",
                 "eval.bootstrap.resamples=200", "eval.calibration.max_pairs=40"])

    assert code == 0
    records = read_records(page)
    assert set(records) == {"hh-rlhf@cpu", "smoke@cpu"}          # the earlier section is kept
    rec = records["smoke@cpu"]
    assert rec["status"] == "ok" and rec["result"]["decision"] in ("promote", "reject", "inconclusive")
    assert {"ingest", "build", "train", "eval", "calibrate", "total"} <= set(rec["seconds"])
    text = page.read_text()
    assert "| smoke | smoke | cpu | preference_accuracy |" in text
    for row in ("| preference_accuracy (primary) |", "| sft_loglik (guard) |", "| judge:rules |"):
        assert row in text, row
    assert "95% CI" in text and "MDE" in text and f"Decision: **{rec['result']['decision'].upper()}**" in text
    assert "RuntimeError: an earlier run" in text                # the kept exp, as it was
    for short in EXPS:
        if short != "hh-rlhf":
            assert f"| {short} | {EXPS[short]} | not run |" in text
    assert "Wall time: ingest" in text and f"{machine()['cores']} cores" in text


def test_gpu_settings_are_one_override_away():
    """`+hw=gpu` turns every real-data exp into its GPU size, both methods of SFT-then-DPO included."""
    from scripts.config import compose
    from train.config import validate

    for exp in EXPS.values():
        cpu, gpu = compose([f"+exp={exp}"]), compose([f"+exp={exp}", "+hw=gpu"])
        validate(gpu)
        assert cpu.model.name_or_path == "models/smollm2-135m" and gpu.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"
        assert cpu.eval.max_examples and gpu.eval.max_examples is None and gpu.eval.latency.prompts > 0
        for node in [gpu.method, *gpu.then.values()]:
            assert node.args.max_steps == -1 and node.args.max_length == 1024, (exp, node.name)
        assert compose([f"+exp={exp}", "+hw=gpu", "model=qwen2.5-7b"]).model.name_or_path == "Qwen/Qwen2.5-7B-Instruct"
