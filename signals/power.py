"""Power before training: what difference an eval split of n examples can detect.

The gate promotes when the lower confidence bound of (candidate - baseline) clears its
margin. With a per-example standard deviation `sd` of that difference, an eval split of
n examples detects a true difference of

    mde(n) = (z(1 - alpha/2) + z(power)) * sd / sqrt(n)

with probability `power` at level alpha = 1 - confidence, and a difference `effect`
needs n = ceil(((z(1 - alpha/2) + z(power)) * sd / effect) ** 2) examples. `sd` is known
for a rate judged against a constant (the win rate: at most 0.5, reached at 0.5); for
paired accuracies it depends on how many verdicts training changes, so DEFAULT_SD
states an assumption (0.5: about one pair in four changes its verdict) and
`gate.power.sd` replaces it; metrics in nats have no default.

    >>> round(mde(30, 0.5), 3), needed(0.1, 0.5)
    (0.256, 197)

The eval layer reports the same figure after scoring (eval.metrics: MDE of each metric),
so a prediction made at build time can be checked against what the gate then reports.
"""

from __future__ import annotations

import math
from statistics import NormalDist

# metric -> the snapshot kind whose eval split it reads (winrate/judge_score: the prompts of
# eval.generation.split, `sft` by default, at most eval.generation.max_prompts of them)
METRIC_KIND = {
    "preference_accuracy": "pref", "preference_accuracy_norm": "pref",
    "preference_margin": "pref", "preference_margin_norm": "pref",
    "sft_loglik": "sft", "kto_auc": "kto", "winrate": "sft", "judge_score": "sft",
}

# metric -> per-example sd of (candidate - baseline) assumed before training (None: unknown)
DEFAULT_SD = {
    "winrate": 0.5,                    # a rate in [0, 1] against 0.5: sd <= 0.5, reached at 0.5 (exact bound)
    "preference_accuracy": 0.5,        # paired 0/1 verdicts: sd = sqrt(share of pairs that change), 1/4 assumed
    "preference_accuracy_norm": 0.5,
    "judge_score": 0.5,                # a rules judge's share of checks in [0, 1]
    "kto_auc": None, "sft_loglik": None, "preference_margin": None, "preference_margin_norm": None,
}


def z_sum(confidence: float = 0.95, power: float = 0.8) -> float:
    """z(1 - alpha/2) + z(power): 2.80 at the defaults."""
    nd = NormalDist()
    return nd.inv_cdf(1 - (1 - confidence) / 2) + nd.inv_cdf(power)


def mde(n: int, sd: float, confidence: float = 0.95, power: float = 0.8) -> float:
    """Smallest true difference an eval split of n examples detects (NaN when n < 1)."""
    if n < 1 or sd is None or not math.isfinite(sd):
        return math.nan
    return z_sum(confidence, power) * sd / math.sqrt(n)


def needed(effect: float, sd: float, confidence: float = 0.95, power: float = 0.8) -> int | None:
    """Eval examples needed to detect a true difference of `effect` (None when unknown)."""
    if not effect or effect <= 0 or sd is None or not math.isfinite(sd):
        return None
    return math.ceil((z_sum(confidence, power) * sd / effect) ** 2)


def sd_of(metric: str, sd: float | None = None) -> float | None:
    """The configured sd, else the metric's default (None: unknown, set gate.power.sd)."""
    return float(sd) if sd is not None else DEFAULT_SD.get(metric)


def eval_size(metric: str, counts: dict, max_prompts: int | None = None, max_examples: int | None = None) -> int:
    """Eval examples metric `metric` will see on a snapshot with manifest `counts`."""
    kind = METRIC_KIND[metric]
    n = int(((counts or {}).get(kind) or {}).get("eval", 0))
    if metric in ("winrate", "judge_score") and max_prompts is not None:
        n = min(n, int(max_prompts))
    elif max_examples is not None:
        n = min(n, int(max_examples))
    return n


def report(metric: str, n: int, *, effect: float | None = None, sd: float | None = None,
           confidence: float = 0.95, power: float = 0.8) -> dict:
    """{metric, n, sd, mde, effect, needed, short}: `short` when n cannot detect `effect`."""
    s = sd_of(metric, sd)
    m = mde(n, s, confidence, power) if s is not None else math.nan
    need = needed(effect, s, confidence, power) if effect else None
    return {"metric": metric, "n": n, "sd": s, "mde": m, "effect": effect, "needed": need,
            "confidence": confidence, "power": power,
            "short": bool(need is not None and n < need)}


def describe(r: dict) -> str:
    """One line: what the eval split can detect, and what the configured effect needs."""
    head = f"power: {r['metric']} on n={r['n']} eval examples"
    if r["sd"] is None:
        return f"{head}: MDE unknown (no default sd for this metric; set gate.power.sd)"
    if r["n"] < 1:
        return f"{head}: its eval split is empty, nothing can be detected"
    line = (f"{head} detects a difference of {r['mde']:.3f} ({r['power']:.0%} power, "
            f"{r['confidence']:.0%} confidence, sd {r['sd']:.2f})")
    if r["needed"] is not None:
        verdict = "too few" if r["short"] else "enough"
        line += f"; the configured effect {r['effect']:g} needs n={r['needed']} ({verdict})"
    return line
