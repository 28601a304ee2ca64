"""Per-example eval results (the Parquet files in `decisions.examples_dir`), summarized
for one eval page: win/tie/loss counts, app/task slices, and the examples where the
candidate and the baseline differ most, with PII redacted before it reaches HTML.

Each file holds one row per example of one metric (`metric` column, else the file
name), with the per-example `baseline` and `candidate` values and the example's
`app`/`task`; generated-answer files add `prompt`, both answers and the judge's
`outcome` (1 candidate wins, 0.5 tie, 0 baseline wins).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

# Accepted spellings, so the page keeps working if a writer names a column differently.
ALIASES = {
    "baseline": ("baseline", "baseline_value", "base", "base_score", "baseline_score"),
    "candidate": ("candidate", "candidate_value", "cand", "cand_score", "candidate_score"),
    "baseline_answer": ("baseline_answer", "base_answer", "baseline_output", "baseline_text",
                        "baseline_completion"),
    "candidate_answer": ("candidate_answer", "cand_answer", "candidate_output", "candidate_text",
                         "candidate_completion"),
    "outcome": ("outcome", "judge_outcome", "win"),
    "verdict": ("verdict", "judge_verdict", "verdicts", "judge"),
    "prompt": ("prompt", "messages"),
}


def _pick(row: dict, key: str):
    for name in ALIASES.get(key, (key,)):
        if name in row and row[name] is not None:
            return row[name]
    return None


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_examples(examples_dir: str | None) -> list[dict]:
    """All per-example rows under `examples_dir`, normalized; [] when there are none."""
    if not examples_dir or not Path(examples_dir).is_dir():
        return []
    import pyarrow.parquet as pq

    out = []
    for f in sorted(Path(examples_dir).rglob("*.parquet")):
        for raw in pq.read_table(f).to_pylist():
            row = {
                "metric": raw.get("metric") or f.stem,
                "interaction_id": raw.get("interaction_id"),
                "app": raw.get("app"), "task": raw.get("task"),
                "baseline": _num(_pick(raw, "baseline")), "candidate": _num(_pick(raw, "candidate")),
                "prompt": _pick(raw, "prompt"),
                "baseline_answer": _pick(raw, "baseline_answer"),
                "candidate_answer": _pick(raw, "candidate_answer"),
                "outcome": _num(_pick(raw, "outcome")), "verdict": _pick(raw, "verdict"),
            }
            if row["outcome"] is None and row["candidate"] is not None and row["baseline_answer"] is not None:
                row["outcome"] = row["candidate"]  # a win-rate file: candidate value is the outcome
            out.append(row)
    return out


def win_tie_loss(rows: list[dict], metric: str) -> tuple[dict, str] | None:
    """Counts of candidate-better / tie / baseline-better, from the judge when there is one,
    else from the per-example values of `metric`. Returns (counts, what was compared)."""
    judged = [r for r in rows if r["outcome"] is not None and r["baseline_answer"] is not None]
    if judged:
        c = {"win": 0, "tie": 0, "loss": 0}
        for r in judged:
            c["win" if r["outcome"] > 0.5 else "loss" if r["outcome"] < 0.5 else "tie"] += 1
        return c, f"judge verdicts on generated answers ({judged[0]['metric']})"
    paired = [r for r in rows if r["metric"] == metric and r["baseline"] is not None
              and r["candidate"] is not None]
    if not paired:
        return None
    c = {"win": 0, "tie": 0, "loss": 0}
    for r in paired:
        d = r["candidate"] - r["baseline"]
        c["win" if d > 1e-12 else "loss" if d < -1e-12 else "tie"] += 1
    return c, f"per-example {metric}"


def slices(rows: list[dict], metric: str) -> list[dict]:
    """Mean baseline and candidate of `metric` per app and per app/task, with n."""
    paired = [r for r in rows if r["metric"] == metric and r["baseline"] is not None
              and r["candidate"] is not None]
    groups: dict[str, list[dict]] = {}
    for r in paired:
        app = r["app"] or "(no app)"
        groups.setdefault(app, []).append(r)
        if r["task"]:
            groups.setdefault(f"{app} / {r['task']}", []).append(r)
    out = []
    for name in sorted(groups):
        g = groups[name]
        b = sum(r["baseline"] for r in g) / len(g)
        c = sum(r["candidate"] for r in g) / len(g)
        out.append({"slice": name, "n": len(g), "baseline": b, "candidate": c, "diff": c - b})
    # Drop a lone app/task line that repeats its app exactly.
    return [s for s in out if not (" / " in s["slice"] and
                                   any(o["slice"] == s["slice"].split(" / ")[0] and o["n"] == s["n"]
                                       for o in out))]


def top_differences(rows: list[dict], metric: str, k: int = 5) -> list[dict]:
    """The k examples where the models differ most: decisive judge verdicts on generated
    answers first (largest value gap), else the largest per-example gap on `metric`."""
    with_answers = [r for r in rows if r["baseline_answer"] is not None or r["candidate_answer"] is not None]
    pool = with_answers or [r for r in rows if r["metric"] == metric]

    def gap(r):
        if r["baseline"] is not None and r["candidate"] is not None and r["baseline_answer"] is None:
            return abs(r["candidate"] - r["baseline"])
        if r["outcome"] is not None:
            return abs(r["outcome"] - 0.5)
        return 0.0

    picked = sorted(pool, key=lambda r: (-gap(r), str(r["interaction_id"])))[:k]
    return [_present(r) for r in picked]


def _present(r: dict) -> dict:
    """One example ready for HTML: text redacted, verdict in words."""
    o = r["outcome"]
    if o is not None:
        verdict = "Candidate better" if o > 0.5 else "Baseline better" if o < 0.5 else "Tie"
        tone = "good" if o > 0.5 else "bad" if o < 0.5 else "unsure"
    elif r["baseline"] is not None and r["candidate"] is not None:
        d = r["candidate"] - r["baseline"]
        verdict = f"{r['metric']}: candidate {r['candidate']:.3f} vs baseline {r['baseline']:.3f}"
        tone = "good" if d > 0 else "bad" if d < 0 else "unsure"
    else:
        verdict, tone = "no verdict", "unsure"
    detail = r["verdict"]
    if detail is not None and not isinstance(detail, str):
        detail = json.dumps(detail, default=str)
    return {"interaction_id": r["interaction_id"], "app": r["app"], "task": r["task"],
            "metric": r["metric"], "verdict": verdict, "tone": tone,
            "judge_detail": redact(detail) if detail else None,
            "prompt": redact(prompt_text(r["prompt"])),
            "baseline_answer": redact(answer_text(r["baseline_answer"])),
            "candidate_answer": redact(answer_text(r["candidate_answer"]))}


def prompt_text(prompt) -> str:
    """Chat messages as 'role: content' lines; a plain string as is."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError:
            return prompt
    if isinstance(prompt, list):
        return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
                         for m in prompt)
    return str(prompt)


def answer_text(answer) -> str:
    """An answer string, or the content of a one-message list."""
    if answer is None:
        return "(not generated)"
    if isinstance(answer, list):
        return "\n".join(m.get("content", "") if isinstance(m, dict) else str(m) for m in answer)
    return str(answer)


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\w)\+?\d[\d ()./-]{7,}\d(?!\w)")


def redact(text: str | None) -> str | None:
    """PII redaction for anything shown on a page: signals.pii.redact when it exists,
    else a conservative fallback (e-mail addresses and phone-like numbers)."""
    if text is None:
        return None
    try:
        from signals.pii import redact as signals_redact
    except ImportError:
        signals_redact = None
    if signals_redact is not None:
        out = signals_redact(text)
        return out[0] if isinstance(out, tuple) else out
    return _PHONE.sub("[PHONE]", _EMAIL.sub("[EMAIL]", text))
