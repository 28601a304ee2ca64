"""Judges and offline metrics measured against the users' own verdicts (eval/calibrate.py),
and the gate that refuses a judge below its floor, uncalibrated, or calibrated on old data."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from eval.calibrate import agreement, calibrate, cohen_kappa, format_calibration, reliability
from eval.gate import decide
from eval.judges import judge_key
from eval.metrics import Metric
from tests.eval.conftest import compose_cfg, make_rows, write_snapshot
from tests.eval.test_judges import FakeEndpoint

GOOD_FIRST = {"name": "rules", "checks": [{"name": "polite", "regex": r"\A(thanks|great|help|good|yes|best)\b"}]}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """60 held-out pairs over two apps; the user's choice is the polite answer in 45 of them
    (pairs 0, 4, 8, ... have chosen and rejected swapped): a polite-rule judge agrees 0.75."""
    rows = make_rows(30, seed=2, app="support") ["pref"] + make_rows(30, seed=3, app="sql")["pref"]
    for i, r in enumerate(rows):
        if i % 4 == 0:
            r["chosen"], r["rejected"] = r["rejected"], r["chosen"]
    kto = make_rows(20, seed=4)["kto"]
    return write_snapshot(tmp_path_factory.mktemp("snaps"), "v-verdicts", {}, {"pref": rows, "kto": kto})


def test_figures_on_constructed_verdicts():
    s = np.r_[np.ones(75), np.zeros(25)]                 # agrees on 75 of 100, same in both orders
    f = agreement(s, s)
    assert f["agreement"] == 0.75 and f["position_bias"] == 0.0
    assert math.isclose(f["kappa"], 0.5)                # p_o 0.75, chance 0.5
    assert f["ci_low"] < 0.75 < f["ci_high"] and 0.65 < f["ci_low"]
    always_a = agreement(np.ones(40), np.zeros(40))     # picks whatever is shown first
    assert always_a["agreement"] == 0.5 and always_a["position_bias"] == 1.0 and always_a["kappa"] == 0.0
    assert cohen_kappa(np.array(list("AABB")), np.array(list("AABB"))) == 1.0
    p = np.r_[np.full(50, 0.9), np.full(50, 0.3)]
    y = np.r_[np.ones(45), np.zeros(5), np.ones(15), np.zeros(35)]     # 0.9 -> 90%, 0.3 -> 30%: calibrated
    ece, curve = reliability(p, y)
    assert ece < 1e-12 and [c["n"] for c in curve] == [50, 50]
    ece, _ = reliability(np.full(100, 0.9), y)          # says 0.9 where 60% happen
    assert math.isclose(ece, 0.3)


def test_calibrate_rules_judge_known_agreement_and_registry(tmp_path, verdicts):
    cfg = compose_cfg(tmp_path, f"eval.snapshot={verdicts}", "eval.calibration.models=[]",
                      "eval/judge=rules", "eval.judge.checks=" + _checks())
    result = calibrate(cfg)
    rows = {(r["predictor"], r["app"]): r for r in result["rows"]}
    overall = rows[("judge:rules", "*")]
    assert overall["n"] == 60 and overall["agreement"] == 0.75
    assert math.isclose(overall["kappa"], 0.5) and overall["position_bias"] == 0.0
    assert rows[("judge:rules", "support")]["n"] == 30 and rows[("judge:rules", "sql")]["n"] == 30
    text = format_calibration(result)
    assert "judge:rules" in text and "0.750" in text

    from eval.registry import latest_calibration
    from signals.store import store

    with store(str(cfg.store), read_only=True) as con:
        got = latest_calibration(con, judge_key(cfg.eval.judge))
        n_rows = con.execute("SELECT count(*) FROM calibrations").fetchone()[0]
    assert got["agreement"] == 0.75 and got["snapshot_version"] == "v-verdicts" and n_rows == 3

    # what evaluate hands the gate
    from eval.harness import _judge_calibration, _plain

    ecfg, gate = _plain(cfg.eval), {"primary": "winrate", "judge": {"min_agreement": 0.7}}
    assert _judge_calibration(ecfg, gate, str(cfg.store))["agreement"] == 0.75
    other = {**ecfg, "judge": {**ecfg["judge"], "checks": [{"name": "x", "regex": "x"}]}}
    assert _judge_calibration(other, gate, str(cfg.store)) is None            # other settings: not calibrated
    assert _judge_calibration(ecfg, {"primary": "winrate"}, str(cfg.store)) is None   # gate.judge off: not read

    # the dashboard shows them: overall, per app, over time
    from eval.dashboard.build import build_site

    pages = build_site(str(cfg.store), tmp_path / "dash")
    page = (tmp_path / "dash" / "calibration.html").read_text()
    assert tmp_path / "dash" / "calibration.html" in pages and 'href="calibration.html"' in \
        (tmp_path / "dash" / "index.html").read_text()
    assert "judge:rules" in page and "<b>75%</b>" in page and "support" in page and "chart-calibration" in page


def _checks() -> str:
    return "[{name:polite,regex:'\\A(thanks|great|help|good|yes|best)\\b'}]"


def test_always_a_llm_judge_has_agreement_half_and_full_position_bias(tmp_path, verdicts, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123456")
    with FakeEndpoint(biased=True) as ep:
        cfg = compose_cfg(tmp_path, f"eval.snapshot={verdicts}", "eval.calibration.models=[]",
                          "eval/judge=openai", f"eval.judge.base_url={ep.url}", "eval.judge.model=fake",
                          "eval.judge.backoff_s=0", "eval.calibration.max_pairs=20")
        result = calibrate(cfg)
    r = next(r for r in result["rows"] if r["app"] == "*")
    assert r["predictor"] == "judge:openai" and r["n"] == 20
    assert r["agreement"] == 0.5 and r["position_bias"] == 1.0 and r["kappa"] == 0.0


def test_calibrate_log_prob_margin_of_the_baseline(tmp_path, verdicts, tiny_model_dir):
    cfg = compose_cfg(tmp_path, f"eval.snapshot={verdicts}", f"model.name_or_path={tiny_model_dir}",
                      "eval.calibration.models=[baseline,candidate]", "eval.calibration.record=false")
    result = calibrate(cfg)
    names = {r["predictor"] for r in result["rows"]}
    assert f"logprob_margin:baseline:{tiny_model_dir}" in names
    r = next(r for r in result["rows"] if r["predictor"].startswith("logprob_margin_norm") and r["app"] == "*")
    assert r["n"] == 60 and 0 <= r["agreement"] <= 1 and r["position_bias"] == 0.0 and 0 <= r["auc"] <= 1
    assert any("candidate: no run" in n for n in result["notes"])


# ----------------------------------------------------------------------------- the gate


WIN = Metric("winrate", 0.5, 0.9, 0.4, 0.3, 0.5, 30, 0.25)
GATE = {"primary": "winrate", "margin": 0.1, "min_eval_size": 20, "guards": {}}


def test_gate_ignores_calibration_unless_configured():
    assert decide({"winrate": WIN}, GATE)["decision"] == "promote"
    assert decide({"winrate": WIN}, {**GATE, "judge": {"min_agreement": None}})["decision"] == "promote"


def test_gate_refuses_uncalibrated_below_floor_or_stale_judge():
    gate = {**GATE, "judge": {"min_agreement": 0.7, "max_age_days": 30}}
    d = decide({"winrate": WIN}, gate, calibration=None)
    assert d["decision"] == "inconclusive" and any("judge not calibrated" in r for r in d["reasons"])
    low = {"agreement": 0.62, "n": 120, "snapshot_version": "v1", "age_days": 2.0}
    d = decide({"winrate": WIN}, gate, calibration=low)
    assert d["decision"] == "inconclusive" and d["checks"]["judge"] == "unsure"
    assert any("judge below floor: agreement 0.620" in r for r in d["reasons"])
    old = {**low, "agreement": 0.8, "age_days": 45.0}
    d = decide({"winrate": WIN}, gate, calibration=old)
    assert d["decision"] == "inconclusive" and any("too old" in r for r in d["reasons"])
    good = {**low, "agreement": 0.8}
    assert decide({"winrate": WIN}, gate, calibration=good)["decision"] == "promote"
    # a gate that reads no judge metric does not need one
    acc = Metric("preference_accuracy", 0.5, 0.7, 0.2, 0.15, 0.3, 60, 0.1)
    assert decide({"preference_accuracy": acc}, {**gate, "primary": "preference_accuracy"})["decision"] == "promote"


def test_latest_calibration_age(tmp_path):
    from eval.registry import latest_calibration, record_calibration
    from signals.store import store

    with store(str(tmp_path / "s.duckdb")) as con:
        assert latest_calibration(con, "rules:x") is None
        base = {"calibration_id": "c1", "predictor": "judge:rules", "kind": "judge", "judge_key": "rules:x",
                "exp_name": "e", "snapshot_version": "v", "n": 10, "agreement": 0.8, "ci_low": 0.5,
                "ci_high": 0.9, "kappa": 0.6, "position_bias": 0.0, "ece": None, "auc": None, "details": {}}
        record_calibration(con, [{**base, "app": "*", "data_time": datetime.now(UTC) - timedelta(days=10)},
                                 {**base, "app": "support", "data_time": None}])
        got = latest_calibration(con, "rules:x")
    assert got["agreement"] == 0.8 and 9.9 < got["age_days"] < 10.1


# ----------------------------------------------------------------------------- a reward model trained on user choices


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_model_dir):
    """`method=reward`'s trainer (TRL RewardTrainer) on 128 user choices of the polite answer;
    saved as a run directory, as `python -m train method=reward` writes one."""
    import json

    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from train.models import load_tokenizer

    run = tmp_path_factory.mktemp("reward") / "rm-run"
    torch.manual_seed(0)
    tok = load_tokenizer(str(tiny_model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    pairs = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in make_rows(128, seed=1)["pref"]]
    args = RewardConfig(output_dir=str(run / "out"), max_steps=12, per_device_train_batch_size=16, learning_rate=5e-3, disable_tqdm=True,
                        use_cpu=True, bf16=False, report_to=[], logging_steps=100, save_strategy="no",
                        activation_checkpointing=False)
    RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tok).train()
    model.save_pretrained(str(run / "model"))
    tok.save_pretrained(str(run / "model"))
    (run / "manifest.json").write_text(json.dumps({
        "run_id": "rm-run", "method": "reward", "base_model": str(tiny_model_dir), "peft": False,
        "artifacts": {"model": "model", "adapter": None}}))
    return run


def test_reward_model_trained_on_user_choices_is_calibrated_like_any_judge(tmp_path, verdicts, reward_run):
    cfg = compose_cfg(tmp_path, f"eval.snapshot={verdicts}", "eval.calibration.models=[]",
                      "eval/judge=reward_model", f"eval.judge.path={reward_run}", "eval.judge.batch_size=32")
    result = calibrate(cfg)
    r = next(r for r in result["rows"] if r["app"] == "*")
    assert r["predictor"] == "judge:reward_model" and r["n"] == 60 and r["position_bias"] == 0.0
    assert r["agreement"] > 0.6                          # learned the users' choice (at most 0.75 here)
    assert 0 <= r["ece"] <= 1 and sum(b["n"] for b in r["details"]["reliability"]) == 120
    assert r["auc"] > 0.6 and r["details"]["auc_rows"] == 40     # polite accepted, impolite rejected
    print(format_calibration(result))
