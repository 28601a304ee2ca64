"""End to end: evaluate tiny trained runs against the base model, gate, record."""

from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from eval import EvalError
from eval.harness import evaluate
from tests.eval.conftest import (
    PARROT,
    compose_cfg,
    make_rows,
    parrot_run,
    train_run,
    write_snapshot,
)
from tests.eval.test_judges import FakeEndpoint


def _decisions(tmp_path):
    con = duckdb.connect(str(tmp_path / "signal.duckdb"), read_only=True)
    try:
        return con.execute("SELECT run_id, decision, reasons, gate_config, eval_config, error "
                           "FROM decisions ORDER BY created_at").fetchall()
    finally:
        con.close()


def _production(tmp_path):
    from eval.registry import alias_target

    con = duckdb.connect(str(tmp_path / "signal.duckdb"), read_only=True)
    try:
        return alias_target(con)
    finally:
        con.close()


def evaluate_and_promote(cfg, run_dir):
    """The eval and promote stages, as the stage chain and `python -m eval run` run them."""
    from eval.registry import promote_if_allowed

    result = evaluate(cfg, run_dir)
    result["promoted"], _ = promote_if_allowed(str(cfg.store), result, cfg.gate,
                                               pointer_dir=cfg.eval.registry.pointer_dir)
    return result


def test_gate_rejects_candidate_trained_on_label_flipped_signal(tmp_path, flipped_run):
    result = evaluate(compose_cfg(tmp_path), str(flipped_run))
    acc = result["metrics"]["preference_accuracy"]
    assert result["decision"] == "reject", result["reasons"]
    assert acc["ci_high"] < 0 and acc["n"] == 60                    # confidently worse than baseline
    assert result["checks"]["preference_accuracy"] == "fail"
    assert result["metrics"]["kto_auc"]["diff"] < 0
    [(run_id, decision, reasons, gate, ecfg, error)] = _decisions(tmp_path)
    assert (run_id, decision, error) == ("flipped", "reject", None)
    assert json.loads(gate)["primary"] == "preference_accuracy"
    assert json.loads(ecfg)["batch_size"] == 16 and json.loads(ecfg)["bootstrap"]["resamples"] == 300
    assert "upper bound is below margin" in json.loads(reasons)[0]
    assert _production(tmp_path) is None


def test_good_candidate_is_promoted_with_records_and_examples(tmp_path, good_run, capsys):
    result = evaluate_and_promote(compose_cfg(tmp_path), str(good_run))
    assert result["decision"] == "promote" and result["promoted"], result["reasons"]
    assert result["metrics"]["preference_accuracy"]["ci_low"] > 0
    assert _production(tmp_path) == "good"
    pointer = json.loads((tmp_path / "runs" / "production.json").read_text())
    assert pointer["run_id"] == "good" and pointer["model_path"].endswith("good/model")

    con = duckdb.connect(str(tmp_path / "signal.duckdb"), read_only=True)
    rows = dict(con.execute("SELECT metric, n FROM eval_results WHERE eval_id = ?", [result["eval_id"]]).fetchall())
    con.close()
    assert rows["preference_accuracy"] == 60 and rows["kto_auc"] == 120 and rows["winrate"] == 8
    # latency and cost, both models, the first eval.latency.prompts (8) win-rate prompts
    for name in ("latency_ttft_p50_ms", "latency_ttft_p95_ms", "latency_p95_ms", "tokens_per_s", "peak_memory_mb"):
        m = result["metrics"][name]
        assert rows[name] == 8 and m["baseline"] > 0 and m["candidate"] > 0, (name, m)
        assert m["details"]["ratio"] == pytest.approx(m["candidate"] / m["baseline"])
    ttft, whole = result["metrics"]["latency_ttft_p95_ms"], result["metrics"]["latency_p95_ms"]
    assert ttft["candidate"] <= whole["candidate"] and ttft["baseline"] <= whole["baseline"]
    assert result["metrics"]["peak_memory_mb"]["details"]["memory"]["candidate"].startswith("process RSS")
    assert "latency.max_ttft_p95_ratio" not in result["checks"]                 # not gated by default
    lat = pq.read_table(f"{result['examples_dir']}/latency.parquet").to_pylist()
    assert len(lat) == 8 and all(r["cand_tokens"] == 8 and r["cand_ttft_ms"] <= r["cand_total_ms"] for r in lat)
    from eval.__main__ import format_result, main

    printed = format_result(result)
    assert "latency on 8 prompts, one at a time (baseline: HF generate on cpu" in printed
    assert f"{'latency_ttft_p95_ms':24} {ttft['baseline']:10.1f} {ttft['candidate']:10.1f}" in printed
    assert main(["registry", "--store", str(tmp_path / "signal.duckdb")]) == 0     # the registry lists them
    assert f"{ttft['baseline']:.1f} > {ttft['candidate']:.1f}" in capsys.readouterr().out

    pref = pq.read_table(f"{result['examples_dir']}/pref.parquet")
    assert pref.num_rows == 60 and {"interaction_id", "base_margin", "cand_margin", "eval_id"} <= set(pref.column_names)
    win = pq.read_table(f"{result['examples_dir']}/winrate.parquet").to_pylist()
    assert len(win) == 8 and {"base_answer", "cand_answer", "outcome", "judge_details"} <= set(win[0])
    assert not (tmp_path / result["examples_dir"] / "decision.json").exists()     # the registry holds decisions


def test_lora_adapter_run_and_production_baseline(tmp_path, tiny_model_dir, snapshot, good_run):
    adapter = train_run(tiny_model_dir, tmp_path / "runs" / "lora" / "a1", snapshot, adapter=True, steps=8)
    evaluate_and_promote(compose_cfg(tmp_path), str(good_run))        # good -> production
    result = evaluate(compose_cfg(tmp_path, "baseline=production", "eval.metrics=[preference,kto]",
                                  "~gate.guards.sft_loglik"), str(adapter))
    assert result["baseline"] == "production:good"
    assert result["decision"] in {"reject", "inconclusive"}          # not better than production
    assert _production(tmp_path) == "good"


def test_missing_candidate_dir_is_a_clear_error(tmp_path, capsys):
    from eval.__main__ import main

    with pytest.raises(EvalError, match="candidate run directory .*nope does not exist"):
        evaluate(compose_cfg(tmp_path), str(tmp_path / "nope"))
    assert main([f"store={tmp_path / 's.duckdb'}", f"candidate={tmp_path / 'nope'}"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_empty_eval_split_errors_or_is_skipped(tmp_path, good_run):
    rows = make_rows(30, seed=5)
    no_pref = write_snapshot(tmp_path / "snaps", "no-pref", {}, {"sft": rows["sft"], "kto": rows["kto"]})
    with pytest.raises(EvalError, match=r"empty eval split .*no-pref/pref/eval.parquet.*preference_accuracy"):
        evaluate(compose_cfg(tmp_path, f"snapshot={no_pref}"), str(good_run))
    [(_, decision, reasons, _, _, error)] = _decisions(tmp_path)
    assert decision == "inconclusive" and "empty eval split" in error
    no_kto = write_snapshot(tmp_path / "snaps", "no-kto", {}, {"sft": rows["sft"], "pref": rows["pref"]})
    result = evaluate(compose_cfg(tmp_path, f"snapshot={no_kto}", "eval.metrics=[preference,likelihood,kto]"),
                      str(good_run))
    assert "kto_auc" not in result["metrics"] and any("kto: skipped" in n for n in result["notes"])
    assert result["decision"] == "promote"


def test_nan_scores_never_promote(tmp_path, good_run):
    import torch
    from transformers import AutoModelForCausalLM

    bad = tmp_path / "runs" / "dpo_tiny" / "nan"
    shutil.copytree(good_run, bad)
    model = AutoModelForCausalLM.from_pretrained(bad / "model")
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(bad / "model")
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "run_id": "nan"}))
    with pytest.raises(EvalError, match=r"candidate model, pref eval split .*score is nan for example 's2-"):
        evaluate(compose_cfg(tmp_path), str(bad))
    assert _decisions(tmp_path)[0][1] == "inconclusive" and _production(tmp_path) is None


def test_baseline_that_cannot_load(tmp_path, good_run):
    with pytest.raises(EvalError, match=r"baseline model '.*no-such-model' cannot be loaded"):
        evaluate(compose_cfg(tmp_path, f"baseline={tmp_path / 'no-such-model'}"), str(good_run))
    [(_, decision, _, _, _, error)] = _decisions(tmp_path)
    assert decision == "inconclusive" and "cannot be loaded" in error
    assert _production(tmp_path) is None


def test_openai_judge_through_config(tmp_path, good_run, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    with FakeEndpoint() as ep:
        result = evaluate(compose_cfg(tmp_path, "eval/judge=openai", f"eval.judge.base_url={ep.url}",
                                      "eval.judge.api_key_env=JUDGE_KEY", "eval.judge.backoff_s=0.01",
                                      "eval.metrics=[preference,winrate]", "~gate.guards.sft_loglik",
                                      "eval.generation.max_prompts=4"), str(good_run))
        assert ep.requests == 8                                        # 4 prompts x both orders
    w = result["metrics"]["winrate"]
    assert w["n"] == 4 and w["details"]["judge"] == "openai"
    con = duckdb.connect(str(tmp_path / "signal.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM judgments").fetchone()[0] == 8
    # each cached verdict names the interaction it is about, so `signals forget` can delete it
    assert con.execute("SELECT count(DISTINCT key) FROM judgment_subjects").fetchone()[0] == 8
    con.close()


def test_revoked_snapshot_is_not_evaluated(tmp_path, good_run, snapshot):
    revoked = tmp_path / "revoked"
    shutil.copytree(snapshot, revoked)
    (revoked / "REVOKED.json").write_text("{}")
    with pytest.raises(EvalError, match="was revoked"):
        evaluate(compose_cfg(tmp_path, f"snapshot={revoked}"), str(good_run))


def test_cli_default_command_composes_and_evaluates(tmp_path, good_run, capsys):
    from eval.__main__ import main

    rc = main(["+exp=smoke", f"store={tmp_path / 'signal.duckdb'}", f"output_root={tmp_path / 'runs'}",
               f"candidate={good_run}", "eval.metrics=[preference,likelihood]", "eval.bootstrap.resamples=200"])
    out = capsys.readouterr().out
    assert rc == 0 and "decision: PROMOTE" in out and "preference_accuracy" in out
    assert (tmp_path / "runs" / "production.json").exists()


def test_run_on_a_snapshot_revoked_in_the_store_is_not_evaluated(tmp_path, good_run, snapshot):
    from signals.store import open_store

    con = open_store(tmp_path / "signal.duckdb")
    con.execute("INSERT INTO snapshots (version, recipe_name, path, manifest, created_at, revoked_at, "
                "revoked_reason) VALUES (?, 'test', ?, '{}', now(), now(), 'signals forget u1')",
                [snapshot.name, str(snapshot)])
    con.close()
    with pytest.raises(EvalError, match="run good is tainted .*signals forget u1"):
        evaluate(compose_cfg(tmp_path), str(good_run))
    [(_, decision, _, _, _, error)] = _decisions(tmp_path)
    assert decision == "inconclusive" and "tainted" in error


def test_latency_guard_rejects_a_slower_candidate(tmp_path, good_run):
    """A ratio no measurement can meet (candidate p95 TTFT at most 1e-6 x baseline) rejects
    a candidate that wins on the primary; a lenient one passes. Timing noise cannot flip either."""
    common = ("eval.metrics=[preference,winrate]", "~gate.guards.sft_loglik", "eval.latency.prompts=4")
    result = evaluate(compose_cfg(tmp_path, *common, "gate.latency.max_ttft_p95_ratio=1e-6",
                                  "gate.latency.min_tokens_per_s_ratio=1e-6"), str(good_run))
    assert result["checks"]["preference_accuracy"] == "pass"
    assert result["checks"]["latency.max_ttft_p95_ratio"] == "fail" and result["decision"] == "reject"
    assert result["checks"]["latency.min_tokens_per_s_ratio"] == "pass"
    assert any(r.startswith("latency max_ttft_p95_ratio: latency_ttft_p95_ms candidate") and "not at most 1e-06x" in r
               for r in result["reasons"])
    assert result["metrics"]["latency_ttft_p95_ms"]["n"] == 4
    [(_, decision, _, gate, _, _)] = _decisions(tmp_path)
    assert decision == "reject" and json.loads(gate)["latency"]["max_ttft_p95_ratio"] == 1e-6
    with pytest.raises(EvalError, match="needs eval.latency.prompts > 0"):
        evaluate(compose_cfg(tmp_path, *common, "eval.latency.prompts=0", "gate.latency.max_p95_ratio=1.1"),
                 str(good_run))


def test_answers_and_latency_from_a_real_engine(tmp_path, tiny_model_dir, snapshot, engine_url):
    """eval.engine.url: the win-rate answers come from `transformers serve` (streamed), the
    same greedy answers as HF generate here; TTFT and tokens/s are the engine's."""
    run = parrot_run(tiny_model_dir, tmp_path / "runs" / "sft_tiny" / "parrot", snapshot)
    result = evaluate(compose_cfg(tmp_path, "eval.metrics=[preference,winrate]", "~gate.guards.sft_loglik",
                                  f"eval.engine.url={engine_url}", "eval.latency.prompts=3",
                                  "eval.engine.concurrency=2", "gate.latency.max_p95_ratio=1000"), str(run))
    ttft = result["metrics"]["latency_ttft_p95_ms"]
    assert ttft["n"] == 3 and 0 < ttft["candidate"] <= result["metrics"]["latency_p95_ms"]["candidate"]
    assert ttft["details"]["candidate_source"] == f"engine {engine_url} (model {run / 'model'})"
    assert ttft["details"]["baseline_source"] == f"engine {engine_url} (model {tiny_model_dir})"
    assert result["metrics"]["tokens_per_s"]["candidate"] > 0
    assert "peak_memory_mb" not in result["metrics"]                  # the engine's memory is not visible here
    assert result["checks"]["latency.max_p95_ratio"] == "pass"
    win = pq.read_table(f"{result['examples_dir']}/winrate.parquet").to_pylist()
    assert len(win) == 8 and all(r["cand_answer"] == PARROT for r in win)        # the parrot, through the engine
    assert pq.read_table(f"{result['examples_dir']}/latency.parquet").num_rows == 3
    from eval.scoring import generate
    from train.models import load_for_inference

    model, tok = load_for_inference(str(run / "model"), None)
    prompts = [json.loads(r["prompt"]) for r in win]
    assert generate(model, tok, prompts, max_new_tokens=8) == [r["cand_answer"] for r in win]   # HF == engine
