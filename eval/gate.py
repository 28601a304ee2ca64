"""The promotion gate: promote only on a confident win that regresses no guard.

conf/gate/*.yaml:
    primary: preference_accuracy   # metric whose difference must clear the margin
    margin: 0.0                    # the lower confidence bound of (candidate - baseline) must exceed it
    min_eval_size: 20              # fewer examples than this on any gated metric: inconclusive
    guards: {sft_loglik: 0.25}     # metric: largest allowed regression (non-inferiority)

Per gated metric (all metrics are higher-is-better):
    primary  ci_low > margin -> pass;   ci_high < margin -> fail (confidently short);   else unsure
    guard    ci_low >= -max  -> pass;   ci_high < -max   -> fail (confidently regressed); else unsure
Any fail -> reject; else any unsure, missing metric, NaN or small n -> inconclusive; else promote.

Judge calibration (`gate.judge`, both null = off): when a judge's metric is gated
(winrate, judge_score), the judge's latest calibration against the users' own verdicts
(`python -m eval calibrate`, the registry's `calibrations`) must exist and:
    judge: {min_agreement: 0.7}    # its agreement >= 0.7, else inconclusive ("judge below floor")
    judge: {max_age_days: 30}      # its verdict data (newest feedback) at most 30 days old
    no calibration for this judge's settings -> inconclusive ("judge not calibrated")

Latency (`gate.latency`, every limit null by default): candidate / baseline of one
measurement each, no interval and no min_eval_size (the sample is eval.latency.prompts):
    latency: {max_ttft_p95_ratio: 1.1}   # candidate p95 time to first token <= 1.1 x baseline's
    ratio within the limit -> pass;   beyond it -> fail;   not measured -> unsure
"""

from __future__ import annotations

import math


def _fmt(x: float) -> str:
    return f"{x:+.4f}" if math.isfinite(x) else "nan"


def _usable(m, name: str, min_n: int, reasons: list[str]) -> bool:
    if m is None:
        reasons.append(f"{name}: not computed (its eval split is empty or the metric is disabled)")
        return False
    if m.n < min_n:
        reasons.append(f"{name}: n={m.n} is below min_eval_size={min_n}")
        return False
    if not all(math.isfinite(x) for x in (m.diff, m.ci_low, m.ci_high)):
        reasons.append(f"{name}: difference or interval is NaN")
        return False
    return True


# gate.latency key: (metric, "max" = candidate/baseline at most the limit, "min" = at least)
LATENCY_LIMITS = {"max_ttft_p95_ratio": ("latency_ttft_p95_ms", "max"),
                  "max_p95_ratio": ("latency_p95_ms", "max"),
                  "min_tokens_per_s_ratio": ("tokens_per_s", "min"),
                  "max_peak_memory_ratio": ("peak_memory_mb", "max")}


def latency_limits(gate) -> dict[str, float]:
    """{gate.latency key: limit} for every limit that is set."""
    node = dict((gate or {}).get("latency") or {})
    unknown = sorted(set(node) - set(LATENCY_LIMITS))
    if unknown:
        raise ValueError(f"gate.latency: unknown {unknown}; known: {', '.join(LATENCY_LIMITS)}")
    return {k: float(v) for k, v in node.items() if v is not None}


def _latency(metrics: dict, limits: dict[str, float], checks: dict, reasons: list[str]) -> None:
    for key, limit in limits.items():
        name, side = LATENCY_LIMITS[key]
        m, check = metrics.get(name), f"latency.{key}"
        base, cand = (m.baseline, m.candidate) if m is not None else (math.nan, math.nan)
        if not (math.isfinite(base) and math.isfinite(cand) and base > 0):
            checks[check] = "unsure"
            reasons.append(f"latency {key}: {name} was not measured for both models "
                           "(eval.latency.prompts, and the winrate group for its prompts)")
            continue
        ratio = cand / base
        ok = ratio <= limit if side == "max" else ratio >= limit
        checks[check] = "pass" if ok else "fail"
        bound = "at most" if side == "max" else "at least"
        reasons.append(f"latency {key}: {name} candidate {cand:.4g} / baseline {base:.4g} = {ratio:.3f}x, "
                       f"{'within' if ok else 'not'} {bound} {limit:g}x")


JUDGE_METRICS = ("winrate", "judge_score")     # metrics whose per-example values a judge decides


def judge_limits(gate) -> dict[str, float]:
    """{gate.judge key: limit} for every limit that is set."""
    node = dict((gate or {}).get("judge") or {})
    return {k: float(v) for k, v in node.items() if v is not None}


def judge_gated(gate) -> bool:
    """True when a judge metric is gated and gate.judge sets a limit: the judge must be calibrated."""
    gate = dict(gate or {})
    gated = {gate.get("primary"), *(gate.get("guards") or {})}
    return bool(judge_limits(gate)) and any(m in gated for m in JUDGE_METRICS)


def _judge(calibration: dict | None, limits: dict[str, float], checks: dict, reasons: list[str]) -> None:
    """The judge's calibration against the users: missing, below the floor or too old -> unsure."""
    if calibration is None:
        checks["judge"] = "unsure"
        reasons.append("judge not calibrated: no `python -m eval calibrate` figures for this judge's settings "
                       f"(gate.judge {limits})")
        return
    what = (f"agreement {calibration['agreement']:.3f} with {calibration['n']} user verdicts "
            f"(snapshot {calibration.get('snapshot_version')})")
    floor, max_age = limits.get("min_agreement"), limits.get("max_age_days")
    if floor is not None and not calibration["agreement"] >= floor:
        checks["judge"] = "unsure"
        reasons.append(f"judge below floor: {what} is below gate.judge.min_agreement={floor:g}")
        return
    age = calibration.get("age_days")
    if max_age is not None and (age is None or age > max_age):
        checks["judge"] = "unsure"
        reasons.append(f"judge calibration too old: its data is {age if age is None else round(age, 1)} days old, "
                       f"more than gate.judge.max_age_days={max_age:g} ({what})")
        return
    checks["judge"] = "pass"
    reasons.append(f"judge calibrated: {what}")


def decide(metrics: dict, gate, error: str | None = None, calibration: dict | None = None) -> dict:
    """{"decision": promote|reject|inconclusive, "reasons": [...], "checks": {metric: verdict}}.

    `calibration`: the judge's latest calibration ({agreement, n, snapshot_version, age_days}),
    read only when `judge_gated(gate)`."""
    gate = dict(gate or {})
    primary = gate.get("primary")
    margin = float(gate.get("margin", 0.0))
    min_n = int(gate.get("min_eval_size", 1))
    guards = dict(gate.get("guards") or {})
    if error:
        return {"decision": "inconclusive", "reasons": [f"evaluation failed: {error}"], "checks": {},
                "error": error}
    if not primary:
        return {"decision": "inconclusive", "reasons": ["gate.primary is not set"], "checks": {}}

    limits = latency_limits(gate)
    reasons: list[str] = []
    checks: dict[str, str] = {}
    m = metrics.get(primary)
    if _usable(m, primary, min_n, reasons):
        ci = f"diff {_fmt(m.diff)}, CI [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}], n={m.n}, MDE {m.mde:.4f}"
        if m.ci_low > margin:
            checks[primary] = "pass"
            reasons.append(f"{primary}: lower bound clears margin {margin:+.4f} ({ci})")
        elif m.ci_high < margin:
            checks[primary] = "fail"
            reasons.append(f"{primary}: upper bound is below margin {margin:+.4f} ({ci})")
        else:
            checks[primary] = "unsure"
            reasons.append(f"{primary}: interval includes margin {margin:+.4f} ({ci})")
    else:
        checks[primary] = "unsure"

    for name, allowed in guards.items():
        g = metrics.get(name)
        allowed = float(allowed)
        if not _usable(g, name, min_n, reasons):
            checks[name] = "unsure"
            continue
        ci = f"diff {_fmt(g.diff)}, CI [{_fmt(g.ci_low)}, {_fmt(g.ci_high)}], n={g.n}"
        if g.ci_low >= -allowed:
            checks[name] = "pass"
            reasons.append(f"guard {name}: no regression beyond {allowed:.4f} ({ci})")
        elif g.ci_high < -allowed:
            checks[name] = "fail"
            reasons.append(f"guard {name}: regressed by more than {allowed:.4f} ({ci})")
        else:
            checks[name] = "unsure"
            reasons.append(f"guard {name}: cannot rule out a regression beyond {allowed:.4f} ({ci})")

    _latency(metrics, limits, checks, reasons)
    if judge_gated(gate):
        _judge(calibration, judge_limits(gate), checks, reasons)
    verdicts = set(checks.values())
    decision = "reject" if "fail" in verdicts else "inconclusive" if "unsure" in verdicts else "promote"
    return {"decision": decision, "reasons": reasons, "checks": checks}
