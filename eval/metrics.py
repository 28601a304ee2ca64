"""Paired metrics with bootstrap intervals: baseline vs candidate on the same examples.

Every metric is a statistic of per-example values computed for both models on the
same rows; its difference (candidate - baseline) gets a paired bootstrap interval
(rows resampled together, so per-example difficulty cancels), the sample size, and
the minimum detectable effect: (z_{1-alpha/2} + z_{power}) x bootstrap standard
error, the smallest true difference this eval set would detect at that power.

    m = paired_mean("preference_accuracy", base_correct, cand_correct, boot)
    m.diff, m.ci_low, m.ci_high, m.n, m.mde
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np


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


def _interval(boots: np.ndarray, boot: Bootstrap) -> tuple[float, float, float]:
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return math.nan, math.nan, math.nan
    a = (1 - boot.confidence) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return float(lo), float(hi), float(boots.std(ddof=1)) if boots.size > 1 else 0.0


def mde(se: float, boot: Bootstrap) -> float:
    """Smallest true |difference| detected with probability `power` at level 1 - confidence."""
    z = NormalDist().inv_cdf(1 - (1 - boot.confidence) / 2) + NormalDist().inv_cdf(boot.power)
    return float(z * se) if math.isfinite(se) else math.nan


def paired_mean(name: str, base, cand, boot: Bootstrap, **details) -> Metric:
    """Mean of per-example values for each model; the interval is on the mean difference."""
    base, cand = np.asarray(base, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    n = len(base)
    if n == 0:
        nan = math.nan
        return Metric(name, nan, nan, nan, nan, nan, 0, nan, details)
    d = cand - base
    boots = d[boot.indices(n)].mean(axis=1)
    lo, hi, se = _interval(boots, boot)
    if se == 0 and n > 1:
        # Every pair agreed, so the paired spread is 0 and would claim any effect is
        # detectable; fall back to the unpaired standard error (a conservative bound).
        se = float(np.sqrt((base.var(ddof=1) + cand.var(ddof=1)) / n))
    return Metric(name, float(base.mean()), float(cand.mean()), float(d.mean()), lo, hi, n,
                  mde(se, boot), {"resamples": boot.resamples, "confidence": boot.confidence, **details})


def against_constant(name: str, values, reference: float, boot: Bootstrap, **details) -> Metric:
    """A candidate-only rate (e.g. win rate) compared with a fixed reference (0.5)."""
    values = np.asarray(values, dtype=np.float64)
    return paired_mean(name, np.full_like(values, reference), values, boot, **details)


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
                     boot: Bootstrap, **details) -> Metric:
    """A whole-sample statistic (AUC) of per-row arrays; rows resampled jointly for both models."""
    base, cand = np.asarray(base), np.asarray(cand)
    n = len(base)
    b0, c0 = stat(base, np.arange(n)), stat(cand, np.arange(n))
    if n == 0:
        return Metric(name, b0, c0, math.nan, math.nan, math.nan, 0, math.nan, details)
    boots = np.array([stat(cand, idx) - stat(base, idx) for idx in boot.indices(n)])
    lo, hi, se = _interval(boots, boot)
    return Metric(name, b0, c0, c0 - b0, lo, hi, n, mde(se, boot),
                  {"resamples": boot.resamples, "confidence": boot.confidence, **details})


def kto_auc(base_scores, cand_scores, labels, boot: Bootstrap) -> Metric:
    """How well each model's per-token log-prob separates desirable from undesirable."""
    labels = np.asarray(labels, dtype=bool)

    def stat(scores, idx):
        return auc(scores[idx], labels[idx])

    return paired_statistic("kto_auc", stat, base_scores, cand_scores, boot,
                            desirable=int(labels.sum()), undesirable=int((~labels).sum()))
