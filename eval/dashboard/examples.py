"""Per-example eval results, summarized for one eval page.

The harness writes `{examples_dir}/{split}.parquet` (eval/harness.py `_write_examples`),
one row per example with `interaction_id`, `app`, `task`, `origin` and:

    pref.parquet     base_margin, cand_margin, base_margin_norm, cand_margin_norm (nats)
    sft.parquet      base_loglik, cand_loglik (nats per token)
    kto.parquet      label, base_loglik, cand_loglik
    winrate.parquet  prompt (JSON messages), base_answer, cand_answer, outcome
                     (1 candidate wins, 0.5 tie, 0 baseline wins), base_score,
                     cand_score, judge_details (JSON)

From these: win/tie/loss counts, the metric per app/task slice, and the examples where
the two models differ most, with PII redacted before anything reaches HTML.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path


def _acc(margin):
    return None if margin is None else 1.0 if margin > 0 else 0.0 if margin < 0 else 0.5


def _col(name: str) -> Callable[[dict], float | None]:
    return lambda r: r.get(name)


# metric -> (split file, per-example baseline value, per-example candidate value)
PER_EXAMPLE: dict[str, tuple[str, Callable, Callable]] = {
    "preference_accuracy": ("pref", lambda r: _acc(r.get("base_margin")), lambda r: _acc(r.get("cand_margin"))),
    "preference_accuracy_norm": ("pref", lambda r: _acc(r.get("base_margin_norm")),
                                 lambda r: _acc(r.get("cand_margin_norm"))),
    "preference_margin": ("pref", _col("base_margin"), _col("cand_margin")),
    "preference_margin_norm": ("pref", _col("base_margin_norm"), _col("cand_margin_norm")),
    "sft_loglik": ("sft", _col("base_loglik"), _col("cand_loglik")),
    "winrate": ("winrate", lambda r: 0.5, _col("outcome")),
    "judge_score": ("winrate", _col("base_score"), _col("cand_score")),
}


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def read_examples(examples_dir: str | None) -> dict[str, list[dict]]:
    """{split: rows} for every Parquet file in `examples_dir`; {} when there is none."""
    if not examples_dir or not Path(examples_dir).is_dir():
        return {}
    import pyarrow.parquet as pq

    return {f.stem: pq.read_table(f).to_pylist() for f in sorted(Path(examples_dir).glob("*.parquet"))}


def paired(tables: dict, metric: str) -> list[dict]:
    """[{app, task, baseline, candidate}] per example of `metric`; [] when not per-example."""
    if metric not in PER_EXAMPLE:
        return []
    split, fb, fc = PER_EXAMPLE[metric]
    out = []
    for r in tables.get(split, []):
        b, c = fb(r), fc(r)
        if _finite(b) and _finite(c):
            out.append({"app": r.get("app"), "task": r.get("task"), "baseline": b, "candidate": c})
    return out


def win_tie_loss(tables: dict, metrics: list[dict], primary: str) -> tuple[dict, str] | None:
    """(counts of candidate-better / tie / baseline-better, what was compared): the judge's
    verdicts when answers were generated, else per-example values of the primary metric."""
    outcomes = [r.get("outcome") for r in tables.get("winrate", []) if _finite(r.get("outcome"))]
    if outcomes:
        return ({"win": sum(o > 0.5 for o in outcomes), "tie": sum(o == 0.5 for o in outcomes),
                 "loss": sum(o < 0.5 for o in outcomes)}, "the judge's verdict on both models' answers")
    for m in metrics:  # no per-example file, but the registry kept the judge's counts
        d = m.get("details") or {}
        if m["metric"] == "winrate" and all(k in d for k in ("wins", "ties", "losses")):
            return {"win": d["wins"], "tie": d["ties"], "loss": d["losses"]}, "the judge's verdict"
    rows = paired(tables, primary)
    if not rows:
        return None
    c = {"win": 0, "tie": 0, "loss": 0}
    for r in rows:
        d = r["candidate"] - r["baseline"]
        c["win" if d > 1e-12 else "loss" if d < -1e-12 else "tie"] += 1
    return c, f"each held-out example's {primary.replace('_', ' ')}"


def slices(tables: dict, metric: str) -> list[dict]:
    """Baseline and candidate of `metric` per app and per app/task, with n.
    Means for per-example metrics; kto_auc is recomputed per slice."""
    groups: dict[str, list] = {}

    def add(r, item):
        app = r.get("app") or "(no app)"
        groups.setdefault(app, []).append(item)
        if r.get("task"):
            groups.setdefault(f"{app} / {r['task']}", []).append(item)

    if metric == "kto_auc":
        for r in tables.get("kto", []):
            if _finite(r.get("base_loglik")) and _finite(r.get("cand_loglik")) and r.get("label") is not None:
                add(r, r)
        stat = _auc_slice
    else:
        for r in paired(tables, metric):
            add(r, r)
        stat = _mean_slice
    out = []
    for name in sorted(groups):
        b, c = stat(groups[name])
        if b is not None and c is not None:
            out.append({"slice": name, "n": len(groups[name]), "baseline": b, "candidate": c})
    # An app with a single task: its "app / task" line repeats the app line; keep one.
    return [s for s in out if not (" / " in s["slice"] and any(
        o["slice"] == s["slice"].split(" / ")[0] and o["n"] == s["n"] for o in out))]


def _mean_slice(rows):
    return (sum(r["baseline"] for r in rows) / len(rows), sum(r["candidate"] for r in rows) / len(rows))


def _auc_slice(rows):
    from eval.metrics import auc

    labels = [bool(r["label"]) for r in rows]
    b, c = auc([r["base_loglik"] for r in rows], labels), auc([r["cand_loglik"] for r in rows], labels)
    return (b if math.isfinite(b) else None, c if math.isfinite(c) else None)


# ----------------------------------------------------------------------------- examples


def top_differences(tables: dict, snapshot_path: str | None, k: int = 5) -> list[dict]:
    """The k examples where the models differ most: judged generated answers when there
    are any (decisive verdicts, then the largest score gap), else preference pairs
    whose margin moved most (prompt and answers read from the snapshot's eval split)."""
    gen = tables.get("winrate", [])
    if gen:
        def gap(r):
            s = (r["cand_score"] - r["base_score"]) if _finite(r.get("cand_score")) and _finite(r.get("base_score")) else 0
            return (-abs(s), str(r.get("interaction_id")))
        return [_judged(r) for r in _balanced(gen, lambda r: _side(r.get("outcome"), 0.5), gap, k)]
    pref = [r for r in tables.get("pref", []) if _finite(r.get("base_margin")) and _finite(r.get("cand_margin"))]
    pairs = _snapshot_pairs(snapshot_path) if pref else {}
    pref = [r for r in pref if r.get("interaction_id") in pairs]

    def moved(r):
        flipped = _acc(r["base_margin"]) != _acc(r["cand_margin"])
        return (not flipped, -abs(r["cand_margin"] - r["base_margin"]), str(r["interaction_id"]))
    picked = _balanced(pref, lambda r: _side(r["cand_margin"], r["base_margin"]), moved, k)
    return [_pair(r, pairs[r["interaction_id"]]) for r in picked]


def _side(value, reference) -> int:
    """1 where the candidate did better, -1 where the baseline did, 0 for a tie."""
    if not _finite(value):
        return 0
    return 1 if value > reference else -1 if value < reference else 0


def _balanced(rows: list[dict], side, key, k: int) -> list[dict]:
    """Up to k rows, alternating the candidate's best and worst cases (each list sorted by
    `key`), so a page shows both why a model might win and where it still loses."""
    better = sorted((r for r in rows if side(r) > 0), key=key)
    worse = sorted((r for r in rows if side(r) < 0), key=key)
    ties = sorted((r for r in rows if side(r) == 0), key=key)
    out = []
    while len(out) < k and (better or worse):
        for lst in (better, worse):
            if lst and len(out) < k:
                out.append(lst.pop(0))
    return out + ties[: k - len(out)]


def _judged(r: dict) -> dict:
    o = r.get("outcome")
    verdict, tone = (("Judge: candidate better", "good") if _finite(o) and o > 0.5 else
                     ("Judge: baseline better", "bad") if _finite(o) and o < 0.5 else ("Judge: tie", "unsure"))
    return {**_where(r), "verdict": verdict, "tone": tone,
            "prompt": redact(prompt_text(r.get("prompt"))),
            "answers": [("Baseline answer", redact(answer_text(r.get("base_answer")))),
                        ("Candidate answer", redact(answer_text(r.get("cand_answer"))))],
            "detail": redact(_judge_detail(r))}


def _pair(r: dict, pair: dict) -> dict:
    b, c = r["base_margin"], r["cand_margin"]
    if _acc(c) > _acc(b):
        verdict, tone = "Candidate now prefers the user's answer; the baseline did not", "good"
    elif _acc(c) < _acc(b):
        verdict, tone = "Candidate now prefers the rejected answer; the baseline did not", "bad"
    else:
        verdict, tone = ("Both prefer the user's answer" if _acc(c) == 1 else "Both prefer the rejected answer",
                         "good" if c > b else "bad")
    return {**_where(r), "verdict": verdict, "tone": tone,
            "prompt": redact(prompt_text(pair["prompt"])),
            "answers": [("Answer the user preferred", redact(answer_text(pair["chosen"]))),
                        ("Answer the user rejected", redact(answer_text(pair["rejected"])))],
            "detail": f"preference margin (log-prob of preferred minus rejected): baseline {b:+.2f}, "
                      f"candidate {c:+.2f}"}


def _where(r: dict) -> dict:
    return {"interaction_id": r.get("interaction_id"), "app": r.get("app"), "task": r.get("task")}


def _judge_detail(r: dict) -> str | None:
    parts = []
    if _finite(r.get("base_score")) and _finite(r.get("cand_score")):
        parts.append(f"scores: baseline {r['base_score']:.2f}, candidate {r['cand_score']:.2f}")
    d = r.get("judge_details")
    if isinstance(d, str):
        try:
            d = json.loads(d)
        except json.JSONDecodeError:
            pass
    if d:
        parts.append(_plain(d))
    return " · ".join(parts) or None


def _plain(d, sep: str = "; ") -> str:
    """Judge details in words: {"candidate": {"greeting": true}} -> 'candidate: greeting ✓'."""
    if isinstance(d, dict):
        return sep.join(f"{k} {_plain(v)}" if isinstance(v, bool) else f"{k}: {_plain(v, ', ')}"
                        for k, v in d.items())
    if isinstance(d, bool):
        return "✓" if d else "✗"
    return str(d)


def _snapshot_pairs(snapshot_path: str | None) -> dict[str, dict]:
    """interaction_id -> {prompt, chosen, rejected} from the snapshot's pref/eval.parquet."""
    f = Path(snapshot_path or "") / "pref" / "eval.parquet"
    if not snapshot_path or not f.is_file():
        return {}
    import pyarrow.parquet as pq

    cols = ["interaction_id", "prompt", "chosen", "rejected"]
    return {r["interaction_id"]: r for r in pq.read_table(f, columns=cols).to_pylist()}


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
        answer = "\n".join(m.get("content", "") if isinstance(m, dict) else str(m) for m in answer)
    return str(answer) if str(answer).strip() else "(empty answer)"


def redact(text: str | None) -> str | None:
    """Anything shown on a page goes through the exporters' PII redaction (signals.pii)."""
    from signals.pii import redact as pii_redact

    return None if text is None else pii_redact(text)[0]
