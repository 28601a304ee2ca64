"""Gate decisions: promote only on a confident win with no guard regression."""

from __future__ import annotations

import math

from eval.gate import decide
from eval.metrics import Metric


def M(name, diff, lo, hi, n=100):
    return Metric(name, 0.5, 0.5 + diff, diff, lo, hi, n, 0.05)


GATE = {"primary": "preference_accuracy", "margin": 0.02, "min_eval_size": 50,
        "guards": {"sft_loglik": 0.1}}


def test_promote_when_lower_bound_clears_margin_and_guards_hold():
    d = decide({"preference_accuracy": M("preference_accuracy", 0.1, 0.05, 0.15),
                "sft_loglik": M("sft_loglik", -0.02, -0.08, 0.04)}, GATE)
    assert d["decision"] == "promote", d
    assert d["checks"] == {"preference_accuracy": "pass", "sft_loglik": "pass"}


def test_inconclusive_when_interval_straddles_margin():
    d = decide({"preference_accuracy": M("preference_accuracy", 0.03, 0.0, 0.06),
                "sft_loglik": M("sft_loglik", 0.0, -0.01, 0.01)}, GATE)
    assert d["decision"] == "inconclusive" and "includes margin" in d["reasons"][0]


def test_reject_when_confidently_worse():
    d = decide({"preference_accuracy": M("preference_accuracy", -0.3, -0.4, -0.2),
                "sft_loglik": M("sft_loglik", 0.0, -0.01, 0.01)}, GATE)
    assert d["decision"] == "reject"


def test_guard_regression_rejects_a_primary_win():
    d = decide({"preference_accuracy": M("preference_accuracy", 0.2, 0.1, 0.3),
                "sft_loglik": M("sft_loglik", -0.5, -0.6, -0.4)}, GATE)
    assert d["decision"] == "reject" and any("guard sft_loglik: regressed" in r for r in d["reasons"])


def test_never_promote_on_small_n_nan_missing_guard_or_error():
    win = M("preference_accuracy", 0.2, 0.1, 0.3)
    ok_guard = M("sft_loglik", 0.0, -0.01, 0.01)
    small = {"preference_accuracy": M("preference_accuracy", 0.2, 0.1, 0.3, n=10), "sft_loglik": ok_guard}
    assert decide(small, GATE)["decision"] == "inconclusive"
    assert "below min_eval_size=50" in decide(small, GATE)["reasons"][0]
    nan = {"preference_accuracy": M("preference_accuracy", math.nan, math.nan, math.nan), "sft_loglik": ok_guard}
    assert decide(nan, GATE)["decision"] == "inconclusive"
    assert decide({"preference_accuracy": win}, GATE)["decision"] == "inconclusive"
    d = decide({"preference_accuracy": win, "sft_loglik": ok_guard}, GATE, error="baseline cannot load")
    assert d["decision"] == "inconclusive" and "baseline cannot load" in d["reasons"][0]


def L(name, base, cand):
    return Metric(name, base, cand, cand - base, math.nan, math.nan, 8, math.nan)


def test_latency_ratio_limits():
    """gate.latency: candidate / baseline of one measurement each; off unless set."""
    win = {"preference_accuracy": M("preference_accuracy", 0.2, 0.1, 0.3),
           "sft_loglik": M("sft_loglik", 0.0, -0.01, 0.01)}
    slow = {**win, "latency_ttft_p95_ms": L("latency_ttft_p95_ms", 100.0, 120.0),
            "tokens_per_s": L("tokens_per_s", 50.0, 40.0), "peak_memory_mb": L("peak_memory_mb", 500.0, 510.0)}
    assert decide(slow, GATE)["decision"] == "promote"                       # not gated by default
    d = decide(slow, {**GATE, "latency": {"max_ttft_p95_ratio": 1.1, "max_p95_ratio": None}})
    assert d["decision"] == "reject" and d["checks"]["latency.max_ttft_p95_ratio"] == "fail"
    assert "max_p95_ratio" not in str(d["checks"])                            # null: not gated
    assert any("= 1.200x, not at most 1.1x" in r for r in d["reasons"])
    d = decide(slow, {**GATE, "latency": {"max_ttft_p95_ratio": 1.25, "min_tokens_per_s_ratio": 0.75,
                                          "max_peak_memory_ratio": 1.05}})
    assert d["decision"] == "promote", d
    d = decide(slow, {**GATE, "latency": {"min_tokens_per_s_ratio": 0.9}})
    assert d["decision"] == "reject" and d["checks"]["latency.min_tokens_per_s_ratio"] == "fail"
    d = decide(win, {**GATE, "latency": {"max_p95_ratio": 1.1}})             # not measured: never promote
    assert d["decision"] == "inconclusive" and "was not measured" in d["reasons"][-1]
    nan = {**win, "peak_memory_mb": L("peak_memory_mb", 500.0, math.nan)}
    assert decide(nan, {**GATE, "latency": {"max_peak_memory_ratio": 2}})["decision"] == "inconclusive"
    assert decide({}, {**GATE, "latency": {"nope": 1}}, error="x")["decision"] == "inconclusive"
