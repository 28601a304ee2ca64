"""Intervals that stay honest at the boundary, and cover near their nominal level.

Every gated metric's interval (eval/metrics.py) is simulated at n = 20, 38 and 200 from
a distribution whose true difference is known; the share of intervals holding it must
be near 95%. Loops over a few hundred draws with a fixed seed: a few seconds each.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from eval.metrics import Bootstrap, against_constant, auc, kto_auc, paired_mean, t_quantile, wilson
from signals import power

SIZES = (20, 38, 200)


def coverage(draw, n: int, reps: int = 400) -> float:
    rng = np.random.default_rng(n)
    hits = 0
    for r in range(reps):
        m, truth = draw(rng, n, r)
        hits += m.ci_low <= truth <= m.ci_high
    return hits / reps


def winrate(p):
    def draw(rng, n, r):
        return against_constant("winrate", (rng.random(n) < p).astype(float), 0.5, Bootstrap()), p - 0.5
    return draw


def accuracy(cells):
    """Paired 0/1 verdicts; cells = P(both right), P(only baseline), P(only candidate), P(neither)."""
    cells = np.asarray(cells)

    def draw(rng, n, r):
        k = rng.choice(4, size=n, p=cells)
        base, cand = np.isin(k, [0, 1]).astype(float), np.isin(k, [0, 2]).astype(float)
        return paired_mean("preference_accuracy", base, cand, Bootstrap(resamples=300, seed=r),
                           bounds=(0, 1)), cells[2] - cells[1]
    return draw


def margin(shape):
    """A log-probability margin: candidate = baseline + 0.3 + skewed noise (gamma, centred)."""
    def draw(rng, n, r):
        base = rng.normal(0, 1, n)
        cand = base + 0.3 + rng.gamma(shape, 1, n) - shape
        return paired_mean("preference_margin", base, cand, Bootstrap(resamples=300, seed=r)), 0.3
    return draw


def _kto_rows(rng, n):
    y = rng.random(n) < 0.5
    base = rng.normal(0, 1, n) + 0.5 * y
    cand = 0.6 * base + 0.8 * rng.normal(0, 1, n) + 0.9 * y
    return base, cand, y


@functools.cache
def kto():
    b, c, y = _kto_rows(np.random.default_rng(99), 50_000)
    truth = auc(c, y) - auc(b, y)

    def draw(rng, n, r):
        b, c, y = _kto_rows(rng, n)
        return kto_auc(b, c, y, Bootstrap(resamples=200, seed=r)), truth
    return draw


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case,draw", [
    ("winrate p=0.5", winrate(0.5)), ("winrate p=0.8", winrate(0.8)),
    ("preference_accuracy", accuracy([0.5, 0.1, 0.2, 0.2])),
    ("preference_margin (skewed)", margin(2.0)),
])
def test_coverage_near_nominal(case, draw, n):
    cov = coverage(draw, n)
    print(f"{case:28} n={n:3d} coverage {cov:.3f}")
    assert 0.92 <= cov <= 0.985, f"{case} at n={n}: {cov:.3f} of 95% intervals hold the truth"


@pytest.mark.parametrize("n", SIZES)
def test_coverage_kto_auc(n):
    cov = coverage(kto(), n, reps=400 if n < 200 else 120)
    print(f"kto_auc n={n:3d} coverage {cov:.3f}")
    assert 0.92 <= cov <= 0.99, f"kto_auc at n={n}: {cov:.3f}"


def test_rare_changes_stay_covered():
    """Few pairs change verdict (2% and 5%): the paired interval is conservative there, not short."""
    for n in SIZES:
        assert coverage(accuracy([0.6, 0.02, 0.05, 0.33]), n) >= 0.95


def test_all_equal_samples_do_not_collapse():
    """The demo's 30 wins of 30, and 120 pairs of which none changed: intervals, not points."""
    m = against_constant("winrate", np.ones(30), 0.5, Bootstrap())
    assert m.diff == 0.5 and m.ci_high == 0.5
    assert 0.38 < m.ci_low < 0.39                       # Wilson lower bound of 30/30 is 0.886
    assert math.isclose(m.mde, power.mde(30, 0.5))      # 0.256, what signals.power predicted
    same = np.r_[np.ones(75), np.zeros(45)]
    m = paired_mean("preference_accuracy", same, same, Bootstrap(), bounds=(0, 1))
    assert m.diff == 0 and m.ci_low < -0.01 and m.ci_high > 0.01 and m.mde > 0
    m = paired_mean("preference_margin", np.zeros(40), np.zeros(40), Bootstrap())   # identical models
    assert math.isnan(m.mde)                            # not estimable: never printed as 0


def test_helpers_against_known_values():
    assert abs(t_quantile(0.975, 19) - 2.093) < 2e-3 and abs(t_quantile(0.975, 4) - 2.776) < 1e-2
    lo, hi = wilson(0.5, 100)
    assert abs(lo - 0.4038) < 1e-3 and abs(hi - 0.5962) < 1e-3
    with pytest.raises(ValueError, match="outside their bounds"):
        paired_mean("x", [0.0, 2.0], [1.0, 1.0], Bootstrap(), bounds=(0, 1))


@pytest.mark.parametrize("metric,draw_cells", [
    ("winrate", None), ("preference_accuracy", [0.5, 0.125, 0.125, 0.25]),    # 1 pair in 4 changes
])
@pytest.mark.parametrize("n", [38, 200])
def test_mde_prediction_matches_what_the_gate_reports(metric, draw_cells, n):
    """signals.power predicts the MDE from n before training; after scoring, the gate
    prints an interval whose width (2 z SE) and MDE agree with it within 20%."""
    from eval.gate import decide

    r = power.report(metric, n)
    predicted_width = 2 * r["mde"] / power.z_sum() * 1.959964
    rng = np.random.default_rng(n)
    if metric == "winrate":
        m = against_constant("winrate", (rng.random(n) < 0.55).astype(float), 0.5, Bootstrap())
    else:
        k = rng.choice(4, size=n, p=draw_cells)
        m = paired_mean(metric, np.isin(k, [0, 1]).astype(float), np.isin(k, [0, 2]).astype(float),
                        Bootstrap(), bounds=(0, 1))
    d = decide({metric: m}, {"primary": metric, "guards": {}})
    assert f"MDE {m.mde:.4f}" in d["reasons"][0]
    assert abs(m.mde / r["mde"] - 1) < 0.2, (m.mde, r)
    assert abs((m.ci_high - m.ci_low) / predicted_width - 1) < 0.2, (m.ci_low, m.ci_high, predicted_width)


def test_eval_reports_power_for_the_primary_with_the_observed_spread():
    """`python -m eval run` prints what its eval split detected and the size gate.power.effect needs."""
    from eval.__main__ import format_result
    from eval.harness import _power

    m = against_constant("winrate", np.r_[np.ones(20), np.zeros(18)], 0.5, Bootstrap())
    r = _power({"primary": "winrate", "power": {"effect": 0.1}}, {"winrate": m}, Bootstrap())
    assert r["n"] == 38 and math.isclose(r["sd"], 0.5) and r["needed"] == 197 and r["short"]
    result = {"run_id": "r", "baseline": "b", "snapshot_version": "v", "eval_id": "e", "decision": "inconclusive",
              "reasons": [], "metrics": {"winrate": m.as_dict()}, "examples_dir": "x", "power": r}
    assert "power: winrate on n=38 eval examples detects a difference of 0.227" in format_result(result)
    assert _power({"primary": "kto_auc"}, {}, Bootstrap()) is None
