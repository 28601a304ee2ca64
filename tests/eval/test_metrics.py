"""Paired bootstrap intervals, AUC and minimum detectable effect."""

from __future__ import annotations

import math

import numpy as np

from eval.metrics import Bootstrap, against_constant, auc, kto_auc, paired_mean


def test_paired_interval_covers_a_known_shift_and_is_reproducible():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 400)
    cand = base + 0.3 + rng.normal(0, 0.2, 400)          # per-example noise much smaller than spread
    boot = Bootstrap(resamples=500, seed=1)
    m = paired_mean("x", base, cand, boot)
    assert m.ci_low < 0.3 < m.ci_high and m.ci_low > 0.2 and m.n == 400
    # pairing: the interval reflects the difference's spread (0.2), not the values' (1.0)
    assert m.ci_high - m.ci_low < 0.1
    assert paired_mean("x", base, cand, boot).ci_low == m.ci_low
    assert paired_mean("x", base, cand, Bootstrap(resamples=500, seed=2)).ci_low != m.ci_low


def test_identical_models_have_zero_difference_but_a_real_mde():
    v = np.array([0.0, 1.0] * 25)                       # e.g. both models right on the same half
    m = paired_mean("x", v, v, Bootstrap(resamples=100))
    assert m.diff == m.ci_low == m.ci_high == 0.0
    # no pair disagrees, yet 50 examples cannot resolve every effect: unpaired SE bound
    assert 0.27 < m.mde < 0.30                          # 2.80 * sqrt(2 * 0.255 / 50) = 0.283


def test_mde_shrinks_with_sample_size():
    rng = np.random.default_rng(0)
    small = paired_mean("x", np.zeros(50), rng.normal(0, 1, 50), Bootstrap(resamples=400))
    big = paired_mean("x", np.zeros(800), rng.normal(0, 1, 800), Bootstrap(resamples=400))
    # (1.96 + 0.84) * sd / sqrt(n): about 0.40 at n=50, 0.10 at n=800
    assert 0.3 < small.mde < 0.5 and 0.08 < big.mde < 0.12


def test_auc_matches_brute_force_with_ties():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 5, 60).astype(float)             # many ties
    y = rng.random(60) < 0.4
    p, n = s[y], s[~y]
    brute = ((p[:, None] > n[None]).sum() + 0.5 * (p[:, None] == n[None]).sum()) / (len(p) * len(n))
    assert math.isclose(auc(s, y), brute)
    assert auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert math.isnan(auc([1, 2], [True, True]))


def test_kto_auc_difference_and_winrate_against_half():
    labels = np.array([True, False] * 30)
    base = np.random.default_rng(0).normal(size=60)
    cand = np.where(labels, 1.0, 0.0) + 0.01 * base
    m = kto_auc(base, cand, labels, Bootstrap(resamples=200))
    assert m.candidate == 1.0 and m.ci_low > 0.2 and m.details["desirable"] == 30
    w = against_constant("winrate", [1.0] * 15 + [0.5] * 5, 0.5, Bootstrap(resamples=200))
    assert w.baseline == 0.5 and math.isclose(w.candidate, 0.875) and w.ci_low > 0
