"""What the numbers on the dashboard mean: metric names, units, the glossary, rating
scales, run labels and the gate's defaults, in words a product manager reads.

Every number on a page has a unit the reader can find: either in its column header,
in a "Unit" column beside it, or in its own text ("55.4%", "+3.3 pts", "3.02 on a 1–5
scale"). Terms that are not everyday words (nats, AUC, detectable change) are
explained in the glossary each evaluation page carries.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_GATE_FILE = ROOT / "conf" / "gate" / "default.yaml"

# name: (plain-language label, "pct" (a share, changes in percentage points) or "num", unit of the value)
METRICS = {
    "preference_accuracy": ("Picks the answer users preferred", "pct", "% of preference pairs"),
    "preference_accuracy_norm": ("Picks the answer users preferred (length-adjusted)", "pct",
                                 "% of preference pairs"),
    "preference_margin": ("How strongly it prefers the users' answer", "num", "nats per answer"),
    "preference_margin_norm": ("How strongly it prefers the users' answer, per token", "num", "nats per token"),
    "sft_loglik": ("Likelihood of answers users accepted or wrote", "num", "nats per token"),
    "kto_auc": ("Tells good answers from bad ones", "num", "AUC (0.5 = chance, 1 = always right)"),
    "winrate": ("Judge prefers the candidate's answer", "pct", "% of prompts (ties count half)"),
    "judge_score": ("Judge's score of the answers", "num", "judge's score"),
    # latency and cost (eval/latency.py): lower is better except tokens/s; their own table
    "latency_ttft_p50_ms": ("Time to first token, median", "num", "ms"),
    "latency_ttft_p95_ms": ("Time to first token, 95th percentile", "num", "ms"),
    "latency_p95_ms": ("Time to the whole answer, 95th percentile", "num", "ms"),
    "tokens_per_s": ("Answer speed", "num", "generated tokens per second"),
    "peak_memory_mb": ("Peak memory while answering", "num", "MB (2^20 bytes)"),
}
LATENCY = ("latency_ttft_p50_ms", "latency_ttft_p95_ms", "latency_p95_ms", "tokens_per_s", "peak_memory_mb")
# gate.latency key -> (metric, "max" | "min"): as eval/gate.py LATENCY_LIMITS
LATENCY_LIMITS = {"max_ttft_p95_ratio": ("latency_ttft_p95_ms", "max"), "max_p95_ratio": ("latency_p95_ms", "max"),
                  "min_tokens_per_s_ratio": ("tokens_per_s", "min"),
                  "max_peak_memory_ratio": ("peak_memory_mb", "max")}
# What the harness writes in eval_results.details["unit"], in the words above.
_DETAIL_UNITS = {"nats (sum)": "nats per answer", "nats per token": "nats per token"}


def metric_label(name: str) -> str:
    return METRICS.get(name, (name.replace("_", " ").capitalize(), "num", ""))[0]


def is_pct(metric: str) -> bool:
    return METRICS.get(metric, ("", "num", ""))[1] == "pct"


def unit(metric: str, details: dict | None = None) -> str:
    """The unit of the metric's value, e.g. 'nats per token' or '% of preference pairs'."""
    if metric in METRICS:
        return METRICS[metric][2]
    u = (details or {}).get("unit") if isinstance(details, dict) else None
    return _DETAIL_UNITS.get(u, u) if u else "no unit recorded (a number as the metric reports it)"


def diff_unit(metric: str, details: dict | None = None) -> str:
    """The unit of a change (candidate - baseline): percentage points for shares."""
    return "percentage points (pts)" if is_pct(metric) else unit(metric, details)


def unit_cell(metric: str, details: dict | None = None) -> str:
    """The text of a table's Unit column: the value's unit and, when it differs, the change's."""
    if is_pct(metric):
        return f"{unit(metric, details)}; changes in pts"
    return unit(metric, details)


def short_unit(metric: str, details: dict | None = None) -> str:
    """A unit to follow a number in a sentence ('−0.500 nats per token'); '' for shares,
    whose numbers carry '%' / 'pts' themselves; '' for an unknown unit."""
    if is_pct(metric):
        return ""
    u = unit(metric, details)
    return "" if u.startswith("no unit") else u.split(" (")[0]


# ----------------------------------------------------------------------------- formats


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def fmt_value(x, metric: str = "") -> str:
    """A metric value for a table: percent for rates, 3 decimals otherwise; '–' when missing."""
    if _missing(x):
        return "–"
    s = f"{x:.1%}" if is_pct(metric) else f"{x:.3f}"
    return s.replace("-", "−")


def fmt_diff(x, metric: str = "") -> str:
    """A signed difference: percentage points for rates; the minus sign is a real minus."""
    if _missing(x):
        return "–"
    s = f"{x * 100:+.1f} pts" if is_pct(metric) else f"{x:+.3f}"
    return s.replace("-", "−")


def fmt_amount(x, metric: str = "", details: dict | None = None) -> str:
    """An unsigned amount with its unit, for sentences: '0.500 nats per token', '5.0 pts'."""
    if _missing(x):
        return "–"
    if is_pct(metric):
        return f"{abs(x) * 100:.1f} pts"
    u = short_unit(metric, details)
    return f"{abs(x):.3f}" + (f" {u}" if u else "")


# ----------------------------------------------------------------------------- the glossary


def glossary(confidence: float = 0.95, power: float = 0.8) -> list[tuple[str, str, str]]:
    """(anchor id, term, explanation) for the terms an evaluation page uses."""
    c, p = f"{confidence:.0%}", f"{power:.0%}"
    return [
        ("term-change", "Change",
         "Candidate minus baseline, measured on the same held-out examples. Higher is better for every "
         "score, so a positive change means the new model did better."),
        ("term-pts", "pts (percentage points)",
         "How a share moved: from 55% to 60% is +5 pts (not +5%)."),
        ("term-range", f"{c} range",
         f"The range the true change lies in with {c} confidence (both models on the same examples: a Wilson "
         "interval for a win rate, an adjusted Wald interval for accuracies, a paired bootstrap for the rest). Entirely above 0: better with confidence (green); entirely below 0: "
         "worse with confidence (red); spanning 0: can't tell yet (amber)."),
        ("term-mde", "Detectable change",
         f"The smallest true change this evaluation set would usually detect: a change this large shows "
         f"up as significant at {c} confidence {p} of the time ({p} power). Smaller real changes can "
         "go unnoticed; more examples make this number smaller."),
        ("term-nats", "nats",
         "Natural-log units of likelihood: how probable the model finds a text (log base e). Per token "
         "means averaged over the text's tokens. Higher (closer to 0) means the model finds the users' "
         "text more likely; +0.1 nats per token is about 10% more likely per token."),
        ("term-auc", "AUC",
         "The probability that a desirable example (accepted or well rated) scores above an undesirable "
         "one (rejected or poorly rated). 0.5 = chance, 1 = always right."),
        ("term-ttft", "Time to first token (TTFT)",
         "How long a user waits before the first word of the answer appears, in milliseconds (ms). "
         "Median: half the timed prompts waited less; 95th percentile (p95): all but the slowest 5% "
         "waited less. Lower is better."),
        ("term-speed", "Answer speed (tokens per second)",
         "Generated tokens (word pieces) divided by the time spent answering, over the timed prompts. "
         "Higher is better."),
        ("term-memory", "Peak memory",
         "The most memory in use while the model answered, in MB (2^20 bytes): on a GPU what PyTorch "
         "allocated, on a CPU the whole process's resident memory. Lower is better."),
        ("term-roles", "Decides / guard / information",
         "The primary metric decides promotion: its range must clear the gate's margin. A guard may get "
         "worse, but by no more than its allowance. Information metrics are shown to explain the model "
         "and never block a promotion."),
    ]


# ----------------------------------------------------------------------------- the gate's defaults


def default_gate(path: Path = DEFAULT_GATE_FILE) -> dict:
    """The default gate config: conf/gate/default.yaml over eval.settings.GateSettings."""
    out: dict = {}
    try:
        from dataclasses import asdict

        from eval.settings import GateSettings

        out = asdict(GateSettings())
    except Exception:  # noqa: BLE001 - the dashboard also builds without the eval extras
        out = {"primary": "preference_accuracy"}
    try:
        import yaml

        node = yaml.safe_load(Path(path).read_text()) or {}
        if isinstance(node, dict):
            out.update({k: v for k, v in node.items() if k != "defaults"})
    except (OSError, ImportError, ValueError):
        pass
    return out


def exp_gate_primary(exp_name: str | None, root: Path = ROOT) -> str | None:
    """gate.primary as set by conf/exp/<exp_name>.yaml, when that file sets one."""
    if not exp_name or not re.fullmatch(r"[A-Za-z0-9._-]+", exp_name):
        return None
    f = root / "conf" / "exp" / f"{exp_name}.yaml"
    try:
        import yaml

        node = yaml.safe_load(f.read_text()) or {}
    except (OSError, ImportError, ValueError):
        return None
    gate = node.get("gate") if isinstance(node, dict) else None
    return gate.get("primary") if isinstance(gate, dict) else None


# ----------------------------------------------------------------------------- runs


def run_methods(run: dict | None, method: str | None = None) -> list[str]:
    """The training methods of a run in order (['sft', 'dpo'] for SFT then DPO), from its
    manifest's `methods` (or `stages`), else the registry's single `method`."""
    manifest = (run or {}).get("manifest")
    if isinstance(manifest, str):
        try:
            manifest = json.loads(manifest)
        except json.JSONDecodeError:
            manifest = None
    if isinstance(manifest, dict):
        methods = manifest.get("methods")
        if not methods and isinstance(manifest.get("stages"), list):
            methods = [s.get("method") for s in manifest["stages"] if isinstance(s, dict)]
        methods = [str(m) for m in methods or [] if m]
        if methods:
            return methods
    m = method or (run or {}).get("method")
    return [str(m)] if m else []


def run_label(run: dict | None, method: str | None = None) -> str:
    """'SFT → DPO fine-tune', 'DPO fine-tune'; '' when the method is unknown."""
    methods = run_methods(run, method)
    return " → ".join(m.upper() for m in methods) + " fine-tune" if methods else ""


# ----------------------------------------------------------------------------- ratings


_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|–|—|to|\.\.)\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_scale(value) -> tuple[float | None, float] | None:
    """A rating scale as recorded in feedback metadata: "1-5", "0–100", "1 to 5", [1, 5],
    {"min": 1, "max": 5}, or a number (the top of the scale). None when unreadable."""
    if isinstance(value, str):
        m = _RANGE.match(value)
        if m:
            return float(m.group(1)), float(m.group(2))
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return (None, float(value)) if value > 0 else None
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return float(value[0]), float(value[1])
    if isinstance(value, dict):
        lo = value.get("min", value.get("low"))
        hi = value.get("max", value.get("high"))
        if isinstance(hi, int | float):
            return (float(lo) if isinstance(lo, int | float) else None), float(hi)
    return None


def _num(x: float) -> str:
    return f"{x:g}"


def rating_scale(recorded: list | None, lowest, highest) -> dict | None:
    """{"text": "1–5", "source": "recorded" | "observed" | "mixed"} for an app's ratings.

    The scale comes from the ratings' metadata `scale` when they record one; ratings with
    several scales are said to be mixed; without any, the lowest and highest score given
    stand in for the scale (and the page says so)."""
    scales = {s for s in (parse_scale(v) for v in recorded or []) if s is not None}
    if len(scales) == 1:
        lo, hi = scales.pop()
        return {"text": f"{_num(lo)}–{_num(hi)}" if lo is not None else f"up to {_num(hi)}",
                "source": "recorded"}
    if len(scales) > 1:
        texts = sorted(f"{_num(lo)}–{_num(hi)}" if lo is not None else f"up to {_num(hi)}" for lo, hi in scales)
        return {"text": ", ".join(texts), "source": "mixed"}
    if lowest is None or highest is None:
        return None
    return {"text": f"{_num(float(lowest))}–{_num(float(highest))}", "source": "observed"}
