"""Paired metrics with confidence intervals: baseline vs candidate on the same examples.

Every metric is a statistic of per-example values computed for both models on the
same rows; its difference (candidate - baseline) gets an interval that stays honest
at the boundary (an all-equal sample never collapses it to a point), the sample size,
and the minimum detectable effect `mde = (z(1-alpha/2) + z(power)) x SE`, the smallest
true difference this eval set would detect at that power (signals.power predicts the
same figure before training). The interval depends on what the values are:

- a rate against a constant (`against_constant`, the win rate vs 0.5): the Wilson score
  interval of the rate, minus the constant; SE for the MDE is the rate's under the null,
  sqrt(r (1 - r) / n). 30 wins of 30 gives [+0.386, +0.500] around 0.5, not a point.
- a paired mean of bounded values (`paired_mean(..., bounds=(0, 1))`, preference
  accuracy, a rules judge's score): the adjusted Wald interval of Agresti and Min
  (2005) for paired proportions, generalized to bounded differences: one pseudo-pair
  at each end of the difference's range (weight 1/2 each) and one at 0 are added
  before mean +/- z SE, so no pair changing still leaves an interval of about +/- 2/n;
  its MDE is at least (z(1-alpha/2) + z(power))^2 / (n + 2) x range, since a true shift
  of delta changes at least that share of the pairs.
- an unbounded paired mean (log-probability margins, likelihood): a paired bootstrap
  with Hesterberg's expanded percentile interval (the percentile interval at the level
  whose normal quantile is sqrt(n/(n-1)) t(n-1)), which corrects the plain percentile
  interval's narrowness at small n.
- a whole-sample statistic (`kto_auc`): the same expanded percentile bootstrap, rows
  resampled jointly for both models.

tests/eval/test_intervals.py simulates each at n = 20, 38 and 200 and checks coverage.

    m = paired_mean("preference_accuracy", base_correct, cand_correct, boot, bounds=(0, 1))
    m.diff, m.ci_low, m.ci_high, m.n, m.mde
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from signals.power import z_sum


@dataclass
class Bootstrap:
    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    power: float = 0.8

    @classmethod
    def from_cfg(cls, node) -> Bootstrap:
        node = dict(node or {})
        return cls(**{k: node[k] for k in ("resamples", "seed", "confidence", "power") if k in node})

    def indices(self, n: int) -> np.ndarray:
        """(resamples, n) row indices; the same seed gives the same resamples for every metric."""
        return np.random.default_rng(self.seed).integers(0, n, size=(self.resamples, n))

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(1 - (1 - self.confidence) / 2)


@dataclass
class Metric:
    name: str
    baseline: float
    candidate: float
    diff: float
    ci_low: float
    ci_high: float
    n: int
    mde: float
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile by the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5);
    within 1e-3 of the exact value from 3 degrees of freedom on."""
    z = NormalDist().inv_cdf(p)
    if not math.isfinite(df) or df <= 0:
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def expanded_alpha(n: int, confidence: float) -> float:
    """Hesterberg's expanded percentile level: the two-sided alpha whose normal quantile is
    sqrt(n/(n-1)) t(1-alpha/2, n-1); plain alpha when n < 3."""
    alpha = 1 - confidence
    if n < 3:
        return alpha
    t = t_quantile(1 - alpha / 2, n - 1) * math.sqrt(n / (n - 1))
    return 2 * (1 - NormalDist().cdf(t))


def _interval(boots: np.ndarray, boot: Bootstrap, n: int) -> tuple[float, float, float]:
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return math.nan, math.nan, math.nan
    a = expanded_alpha(n, boot.confidence) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return float(lo), float(hi), float(boots.std(ddof=1)) if boots.size > 1 else 0.0


def mde(se: float, boot: Bootstrap) -> float:
    """Smallest true |difference| detected with probability `power` at level 1 - confidence;
    NaN (not estimable), never 0, when the standard error is 0 or unknown."""
    if not math.isfinite(se) or se <= 0:
        return math.nan
    return float(z_sum(boot.confidence, boot.power) * se)


def wilson(rate: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a rate observed over n trials (values in [0, 1])."""
    if n < 1:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(max(rate * (1 - rate), 0.0) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _nan_metric(name, details) -> Metric:
    nan = math.nan
    return Metric(name, nan, nan, nan, nan, nan, 0, nan, details)


def paired_mean(name: str, base, cand, boot: Bootstrap, bounds: tuple[float, float] | None = None,
                **details) -> Metric:
    """Mean of per-example values for each model; the interval is on the mean difference.

    `bounds`: the range every per-example value lies in (accuracy: (0, 1)): adjusted Wald
    (Agresti-Min); without it an expanded percentile paired bootstrap."""
    base, cand = np.asarray(base, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    n = len(base)
    if n == 0:
        return _nan_metric(name, details)
    d = cand - base
    if bounds is not None:
        lo_b, hi_b = bounds
        width = float(hi_b - lo_b)
        if ((base < lo_b) | (base > hi_b) | (cand < lo_b) | (cand > hi_b)).any():
            raise ValueError(f"{name}: per-example values outside their bounds {bounds}")
        u = d / width                                   # in [-1, 1]
        m_adj = u.sum() / (n + 2)                       # pseudo-pairs +1 (1/2), -1 (1/2), 0 (1)
        var = (np.square(u).sum() + 1) / (n + 2) - m_adj**2
        se = math.sqrt(var / (n + 2)) * width
        centre = m_adj * width
        lo, hi = max(-width, centre - boot.z * se), min(width, centre + boot.z * se)
        # MDE: a true shift of delta (in units of the range) moves at least that share of the
        # pairs, so the difference's variance is at least delta: delta = z^2 / (n + 2) is a floor
        # that holds even when no pair changed here.
        zs = z_sum(boot.confidence, boot.power)
        floor = zs * zs / (n + 2) * width
        info = {"interval": "adjusted Wald (Agresti-Min), paired", "confidence": boot.confidence}
        return Metric(name, float(base.mean()), float(cand.mean()), float(d.mean()), float(lo), float(hi), n,
                      max(mde(se, boot), floor), {**info, **details})
    boots = d[boot.indices(n)].mean(axis=1)
    lo, hi, se = _interval(boots, boot, n)
    if se == 0 and n > 1:
        # Every pair agreed, so the paired spread is 0 and would claim any effect is
        # detectable; fall back to the unpaired standard error (a conservative bound).
        se = float(np.sqrt((base.var(ddof=1) + cand.var(ddof=1)) / n))
    return Metric(name, float(base.mean()), float(cand.mean()), float(d.mean()), lo, hi, n,
                  mde(se, boot), {"interval": "expanded percentile bootstrap, paired",
                                  "resamples": boot.resamples, "confidence": boot.confidence, **details})


def against_constant(name: str, values, reference: float, boot: Bootstrap, **details) -> Metric:
    """A candidate-only rate in [0, 1] (e.g. win rate, ties 0.5) compared with a fixed
    reference (0.5): Wilson score interval of the rate, minus the reference."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return _nan_metric(name, details)
    if ((values < 0) | (values > 1)).any():
        raise ValueError(f"{name}: values must lie in [0, 1] for a rate")
    rate = float(values.mean())
    lo, hi = wilson(rate, n, boot.confidence)
    se0 = math.sqrt(reference * (1 - reference) / n)    # under the null: rate = reference
    return Metric(name, float(reference), rate, rate - reference, lo - reference, hi - reference, n,
                  mde(se0, boot), {"interval": "Wilson score", "confidence": boot.confidence, **details})


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def auc(scores, labels) -> float:
    """Area under the ROC curve of `scores` for boolean `labels` (Mann-Whitney U / n+ n-)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    npos, nneg = int(labels.sum()), int((~labels).sum())
    if npos == 0 or nneg == 0:
        return math.nan
    r = rankdata(scores)
    return float((r[labels].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def paired_statistic(name: str, stat: Callable[[np.ndarray, np.ndarray], float], base, cand,
                     boot: Bootstrap, batch: Callable | None = None, **details) -> Metric:
    """A whole-sample statistic (AUC) of per-row arrays; rows resampled jointly for both models.
    `batch(cand, base, idx)`, when given, computes every resample's difference at once."""
    base, cand = np.asarray(base), np.asarray(cand)
    n = len(base)
    b0, c0 = stat(base, np.arange(n)), stat(cand, np.arange(n))
    if n == 0:
        return Metric(name, b0, c0, math.nan, math.nan, math.nan, 0, math.nan, details)
    idx = boot.indices(n)
    boots = batch(cand, base, idx) if batch is not None else \
        np.array([stat(cand, i) - stat(base, i) for i in idx])
    lo, hi, se = _interval(boots, boot, n)
    return Metric(name, b0, c0, c0 - b0, lo, hi, n, mde(se, boot),
                  {"interval": "expanded percentile bootstrap, paired", "resamples": boot.resamples,
                   "confidence": boot.confidence, **details})


def kto_auc(base_scores, cand_scores, labels, boot: Bootstrap) -> Metric:
    """How well each model's per-token log-prob separates desirable from undesirable."""
    labels = np.asarray(labels, dtype=bool)

    def stat(scores, idx):
        return auc(scores[idx], labels[idx])

    npos, nneg = int(labels.sum()), int((~labels).sum())
    batch = None
    if npos * nneg <= 20_000_000:                      # the (positives x negatives) table fits in memory

        def batch(cand, base, idx):
            return auc_resampled(cand, labels, idx) - auc_resampled(base, labels, idx)

    return paired_statistic("kto_auc", stat, base_scores, cand_scores, boot, batch=batch,
                            desirable=int(labels.sum()), undesirable=int((~labels).sum()))


def auc_resampled(scores, labels, idx: np.ndarray) -> np.ndarray:
    """AUC of each resample (rows of `idx`) at once: rows weighted by how often each is drawn,
    AUC = w_pos . C . w_neg / (sum w_pos sum w_neg), C[i, j] = 1 if pos i > neg j, 1/2 if tied."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    b, n = idx.shape
    w = np.bincount((np.arange(b)[:, None] * n + idx).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
    sp, sn = scores[labels], scores[~labels]
    c = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    wp, wn = w[:, labels], w[:, ~labels]
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((wp @ c) * wn).sum(axis=1) / (wp.sum(axis=1) * wn.sum(axis=1))
