"""Calibrate judges and offline metrics against what the users chose.

    python -m eval calibrate +exp=NAME                  # eval.judge and the baseline's log-prob margins
    python -m eval calibrate +exp=NAME eval/judge=reward_model eval.judge.path=RUN_DIR
    python -m eval calibrate +exp=NAME 'eval.calibration.models=[baseline,candidate]'

The users' verdicts are the eval split's held-out signal of the exp's snapshot (`snapshot=`,
`eval.snapshot`, or the exp's recipe built from its store, an identical snapshot reused):
every preference pair (an explicit choice; an edit, as "the edited text over the original";
an accepted and a rejected answer to the same prompt; ratings reach both through the
recipe's thresholds) and every accept or reject of the KTO split.

Each predictor sees each pair in both orders, the user's choice first (A) then second (B):

- a judge (`eval.judge`, and every node of `eval.calibration.judges`): rules, a reward
  model, an OpenAI-compatible endpoint (whose own two orders are used as is);
- an offline metric: the log-probability margin, log p(chosen) - log p(rejected), summed
  and per token, under each model of `eval.calibration.models` (the baseline; the exp's
  newest run as `candidate`); a positive margin predicts the user's choice.

Per predictor, over all apps and per app: `agreement` (share of the 2n verdicts that pick
the user's answer, ties 1/2; a judge that always says "A" scores 0.5) with a Wilson
interval over the n pairs (a bootstrap of an all-agree sample would collapse to a
point); Cohen's `kappa` of the judge's label (A, B, tie) against the user's (A, B) over
the 2n presentations; `position_bias`, the share of pairs where the judge picks the same
position in both orders, so its verdict flips with the order (1.0 for always "A"); for
the reward model its calibration, `ece` of P(user's choice) = sigmoid(reward margin) in
`eval.calibration.bins` equal-width bins with the reliability curve in `details`, and
for reward model and log-probabilities the `auc` of accept vs reject on the KTO split.
Rows go to the registry's `calibrations` table (migration 0007), which the gate
(`gate.judge`) and the dashboard read.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from eval import EvalError
from eval.data import open_snapshot, read_split
from eval.metrics import auc, wilson

ALL_APPS = "*"


# ----------------------------------------------------------------------------- figures


def labels(s_first: np.ndarray, s_second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user labels, judge labels) over the 2n presentations: the user's answer is A first,
    B second; a score for the user's answer of 1 / 0 / 0.5 is the matching label / the other / tie."""
    user = np.r_[np.full(len(s_first), "A"), np.full(len(s_second), "B")]
    first = np.where(s_first == 1, "A", np.where(s_first == 0, "B", "tie"))
    second = np.where(s_second == 1, "B", np.where(s_second == 0, "A", "tie"))
    return user, np.r_[first, second]


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two raters' labels of the same items (NaN when chance agreement is 1)."""
    cats = sorted(set(a) | set(b))
    p_o = float(np.mean(a == b))
    p_e = sum(float(np.mean(a == c)) * float(np.mean(b == c)) for c in cats)
    return (p_o - p_e) / (1 - p_e) if p_e < 1 else math.nan


def agreement(s_first, s_second, confidence: float = 0.95) -> dict:
    """The figures of one predictor from its scores for the user's answer in both orders."""
    s1, s2 = np.asarray(s_first, dtype=np.float64), np.asarray(s_second, dtype=np.float64)
    n = len(s1)
    if n == 0:
        return {"n": 0, "agreement": math.nan, "ci_low": math.nan, "ci_high": math.nan, "kappa": math.nan,
                "position_bias": math.nan, "details": {}}
    per_pair = (s1 + s2) / 2
    rate = float(per_pair.mean())
    lo, hi = wilson(rate, n, confidence)
    same_position = ((s1 == 1) & (s2 == 0)) | ((s1 == 0) & (s2 == 1))
    user, judge = labels(s1, s2)
    return {"n": n, "agreement": rate, "ci_low": lo, "ci_high": hi, "kappa": cohen_kappa(user, judge),
            "position_bias": float(same_position.mean()),
            "details": {"agreement_user_first": float(s1.mean()), "agreement_user_second": float(s2.mean()),
                        "interval": "Wilson score", "confidence": confidence}}


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """(expected calibration error, curve): equal-width bins of predicted probability `p` of
    the binary outcomes `y`; ECE = sum over bins of |bin| / N x |mean p - mean y|."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece, curve = 0.0, []
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        mp, my = float(p[mask].mean()), float(y[mask].mean())
        ece += mask.sum() / len(p) * abs(mp - my)
        curve.append({"bin": [b / bins, (b + 1) / bins], "n": int(mask.sum()), "predicted": mp, "observed": my})
    return float(ece), curve


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


# ----------------------------------------------------------------------------- predictors


def _text(messages: list[dict]) -> str:
    return messages[-1]["content"]


def judge_scores(judge, pairs: list[dict]) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Scores for the user's answer with it shown first and second, and the judge's records.

    An endpoint judge asks both orders itself (its details); a scoring judge (rules, reward
    model) is asked twice, the answers swapped."""
    chosen, rejected = [_text(r["chosen"]) for r in pairs], [_text(r["rejected"]) for r in pairs]
    first = judge.compare(pairs, chosen, rejected)            # the user's answer as the "candidate"
    if first and isinstance(first[0].get("details"), str) and "candidate_first" in first[0]["details"]:
        import json

        d = [json.loads(o["details"]) for o in first]
        s1 = np.array([{"A": 1.0, "B": 0.0, "tie": 0.5}[x["candidate_first"]] for x in d])
        s2 = np.array([{"A": 0.0, "B": 1.0, "tie": 0.5}[x["baseline_first"]] for x in d])
        return s1, s2, first
    second = judge.compare(pairs, rejected, chosen)
    return (np.array([o["outcome"] for o in first], dtype=np.float64),
            np.array([1 - o["outcome"] for o in second], dtype=np.float64), first)


def _verdict(margin: np.ndarray) -> np.ndarray:
    return np.where(margin > 0, 1.0, np.where(margin < 0, 0.0, 0.5))


def _rows(predictor: str, kind: str, pairs: list[dict], s1, s2, conf: float, *, judge_key=None,
          extra: dict | None = None, details: dict | None = None) -> list[dict]:
    """One row over all apps, then one per app."""
    apps = np.array([str(r.get("app")) for r in pairs])
    out = []
    for app in [ALL_APPS, *sorted(set(apps))]:
        mask = np.ones(len(pairs), dtype=bool) if app == ALL_APPS else apps == app
        f = agreement(s1[mask], s2[mask], conf)
        row = {"predictor": predictor, "kind": kind, "judge_key": judge_key, "app": app, **f}
        if app == ALL_APPS:
            row.update(extra or {})
            row["details"] = {**row["details"], **(details or {})}
        out.append(row)
    return out


def _score_model(model, tok, pairs, kto, batch_size, max_length):
    """(sum margin, per-token margin, per-token log-lik of the kto rows) under one model."""
    from eval.scoring import encode, score_encoded

    n = len(pairs)
    enc = encode(tok, [r["prompt"] for r in pairs] * 2, [r["chosen"] for r in pairs] + [r["rejected"] for r in pairs],
                 max_length)
    lp, nt = score_encoded(model, enc, tok.pad_token_id, batch_size=batch_size)
    margin, norm = lp[:n] - lp[n:], lp[:n] / nt[:n] - lp[n:] / nt[n:]
    kto_ll = None
    if kto:
        enc = encode(tok, [r["prompt"] for r in kto], [r["completion"] for r in kto], max_length)
        klp, knt = score_encoded(model, enc, tok.pad_token_id, batch_size=batch_size)
        kto_ll = klp / knt
    return margin, norm, kto_ll


def _models(cfg, ecfg, which: list[str]):
    """(label, loader) for each of eval.calibration.models."""
    from eval.runs import load_run_model, read_run

    out = []
    for label in which:
        if label == "baseline":
            name = ecfg.get("baseline") or (cfg.get("model") or {}).get("name_or_path")
            if not name or name == "production":
                raise EvalError("eval.calibration.models: baseline needs eval.baseline or model.name_or_path "
                                "(a model folder or hub id)")
            out.append((f"baseline:{name}", lambda name=name: _load_baseline(cfg, ecfg, str(name))))
        elif label == "candidate":
            cand = ecfg.get("candidate") or _newest_run(cfg)
            if cand is None:
                out.append((label, None))
                continue
            run = read_run(cand)
            out.append((f"candidate:{run.run_id}", lambda run=run: load_run_model(run, cfg.get("model"))))
        else:
            raise EvalError(f"eval.calibration.models: unknown {label!r}; choose from baseline, candidate")
    return out


def _load_baseline(cfg, ecfg, name: str):
    """The baseline model; the exp's own base model is built or fetched first when its folder is
    missing (model.kit, as the train stage does)."""
    from eval.runs import load_model

    if not ecfg.get("baseline") and cfg.get("model") is not None:
        from train.models import ensure_kit

        ensure_kit(cfg.model)
    return load_model(name, cfg.get("model"))


def _newest_run(cfg) -> Path | None:
    runs = [p.parent for p in Path(str(cfg.output_root), str(cfg.exp_name)).glob("*/manifest.json")]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


# ----------------------------------------------------------------------------- the job


def resolve_snapshot(cfg, ecfg):
    """eval.snapshot (a folder), `snapshot=` (a version or folder), else the exp's recipe
    built from its store (an identical snapshot is reused)."""
    store = str(cfg.get("store")) if cfg.get("store") else None
    if ecfg.get("snapshot"):
        return open_snapshot(ecfg["snapshot"], store)
    if cfg.get("snapshot"):
        from signals import snapshot

        try:
            return snapshot.open(str(cfg.snapshot), root=str(cfg.snapshot_root), store=store)
        except snapshot.SnapshotError as e:
            raise EvalError(str(e)) from None
    if not store or not Path(store).is_file():
        raise EvalError(f"signal store {store} does not exist: ingest first (an exp with seed_store fills it: "
                        "python -m train +exp=NAME 'stages=[ingest,build]'), or pass snapshot=VERSION_OR_PATH")
    from omegaconf import OmegaConf

    from signals.build import build_snapshot

    recipe = OmegaConf.to_container(cfg.data, resolve=True) if OmegaConf.is_config(cfg.data) else dict(cfg.data)
    built = build_snapshot(recipe, store, str(cfg.snapshot_root), progress=False)
    return open_snapshot(built.path, store)


def data_time(snapshot) -> datetime | None:
    """When the snapshot's newest feedback was given (its watermark), else when it was built."""
    m = snapshot.manifest or {}
    for value in ((m.get("watermark") or {}).get("max_feedback_ts"), m.get("created_at")):
        if value:
            t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def calibrate(cfg) -> dict:
    """Score every configured judge and model margin against the eval split's user verdicts;
    record the rows in the registry (eval.calibration.record). {calibration_id, snapshot, rows, notes}."""
    from eval.harness import _device, _plain
    from eval.judges import build_judge, judge_key

    ecfg = _plain(cfg.get("eval"))
    cal = ecfg.get("calibration") or {}
    conf = float((ecfg.get("bootstrap") or {}).get("confidence", 0.95))
    snapshot = resolve_snapshot(cfg, ecfg)
    cap = cal.get("max_pairs")
    pairs = read_split(snapshot, "pref", "eval", cap)
    if not pairs:
        raise EvalError(f"snapshot {snapshot.version}: the pref eval split is empty: no user verdicts to "
                        "calibrate against (enable pref in the recipe, or hold out more: split.eval_fraction / "
                        "split.eval_count)")
    kto = read_split(snapshot, "kto", "eval", cap)
    device = _device(ecfg.get("device", "auto"))
    rows, notes = [], []
    judges = [n for n in [ecfg.get("judge"), *(cal.get("judges") or [])] if n]
    for node in judges:
        node = dict(node)
        judge = build_judge({**node, "device": device}, str(cfg.get("store")) if cfg.get("store") else None)
        try:
            s1, s2, records = judge_scores(judge, pairs)
            extra, details = {}, {"origins": _origins(pairs)}
            if node.get("name") == "reward_model":
                margin = np.array([o["cand_score"] - o["base_score"] for o in records])
                p = _sigmoid(margin)
                ece, curve = reliability(np.r_[p, 1 - p], np.r_[np.ones(len(p)), np.zeros(len(p))],
                                         int(cal.get("bins", 10)))
                extra["ece"], details["reliability"] = ece, curve
                if kto:
                    r = judge.rewards([k["prompt"] for k in kto], [_text(k["completion"]) for k in kto])
                    extra["auc"] = auc(r, [bool(k["label"]) for k in kto])
                    details["auc_rows"] = len(kto)
        finally:
            judge.close()
        rows += _rows(f"judge:{node.get('name', 'rules')}", "judge", pairs, s1, s2, conf,
                      judge_key=judge_key(node), extra=extra, details=details)
    bs, ml = int(ecfg.get("batch_size", 16)), ecfg.get("max_length")
    for label, loader in _models(cfg, ecfg, list(cal.get("models") or [])):
        if loader is None:
            notes.append(f"{label}: no run under {cfg.output_root}/{cfg.exp_name}/ yet; not scored")
            continue
        model, tok = loader()
        margin, norm, kto_ll = _score_model(model.to(device), tok, pairs, kto, bs, ml)
        del model
        kauc = auc(kto_ll, [bool(k["label"]) for k in kto]) if kto_ll is not None else math.nan
        for name, m in (("logprob_margin", margin), ("logprob_margin_norm", norm)):
            v = _verdict(m)
            rows += _rows(f"{name}:{label}", "metric", pairs, v, v, conf,
                          extra={"auc": kauc if name == "logprob_margin_norm" else math.nan},
                          details={"origins": _origins(pairs)})
    calibration_id = f"cal-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    when = data_time(snapshot)
    for r in rows:
        r.update(calibration_id=calibration_id, exp_name=str(cfg.get("exp_name")), snapshot_version=snapshot.version,
                 data_time=when)
    if cal.get("record", True) and cfg.get("store"):
        from eval.registry import record_calibration
        from signals.store import store

        with store(str(cfg.store)) as con:
            record_calibration(con, rows)
    return {"calibration_id": calibration_id, "snapshot_version": snapshot.version, "pairs": len(pairs),
            "kto_rows": len(kto), "rows": rows, "notes": notes}


def _origins(pairs) -> dict:
    out: dict[str, int] = {}
    for r in pairs:
        out[str(r.get("origin"))] = out.get(str(r.get("origin")), 0) + 1
    return out


def _num(x, fmt="{:.3f}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def format_calibration(result: dict) -> str:
    """The calibration table: one line per predictor, then its per-app agreement."""
    lines = [f"calibration {result['calibration_id']} on snapshot {result['snapshot_version']}: "
             f"{result['pairs']} user verdicts (pairs), {result['kto_rows']} accept/reject rows",
             f"{'predictor':50} {'app':>14} {'n':>5} {'agreement':>9} {'CI low':>7} {'CI high':>7} "
             f"{'kappa':>6} {'pos.bias':>8} {'ECE':>6} {'AUC':>6}"]
    for r in result["rows"]:
        name = r["predictor"] if r["app"] == ALL_APPS else ""
        lines.append(f"{name:50} {r['app']:>14} {r['n']:5d} {_num(r['agreement']):>9} {_num(r['ci_low']):>7} "
                     f"{_num(r['ci_high']):>7} {_num(r['kappa']):>6} {_num(r['position_bias']):>8} "
                     f"{_num(r.get('ece')):>6} {_num(r.get('auc')):>6}")
    lines += [f"  note: {n}" for n in result["notes"]]
    return "\n".join(lines)
