"""The live check of a promotion: canary against production on what users did, then promote or roll back.

With `online.enabled`, an offline promote (the gate, or `python -m eval promote --force`)
moves the `canary` alias, and the gateway sends the canary its share of users. Every
night the scheduled job's verify stage compares the two runs on the interactions since
the canary started (`eval.live.compare`: stratified by app/task, bootstrap over users):

    too few interactions (online.min_interactions per side)  -> wait
    signed lower bound > threshold                            -> promote: production <- canary
    signed upper bound < 0 (a confident regression)           -> rollback: canary removed
    otherwise                                                 -> wait
    waited online.max_days without an answer                  -> online.on_timeout (rollback | promote)

"Signed" turns a lower-is-better metric (reject rate, latency) around; the threshold is
-margin for `rule: non_inferior` and +margin for `rule: superior`. Each night's decision,
waits included, is a row of `live_decisions`; a promote or rollback moves the aliases in
the same transaction, and the pointer files are rewritten from the registry at the start
of every verify, so a job killed between the two leaves nothing half-done.

Until something is promoted, production is the off-the-shelf model: `ensure_production`
registers it as a run of its own (`base-<name>`) so that the gateway can serve it and the
live check has a baseline to compare against.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from eval import EvalError
from eval.registry import PRODUCTION, _f, alias_stack, alias_target, write_pointer
from signals.store import transaction

CANARY = "canary"
RULES = ("non_inferior", "superior")
TIMEOUT_RULES = ("rollback", "promote")


@dataclass
class Online:
    """The canary lifecycle (root config node `online`)."""
    enabled: bool = False            # true: offline promotes move `canary`; the verify stage decides live
    metric: str = "accept_rate"      # the primary live metric (eval/live.py LIVE_METRICS)
    rule: str = "non_inferior"       # non_inferior: promote when not worse by more than margin; superior: better by it
    margin: float = 0.0              # in the metric's units (0.02 = 2 points of accept rate)
    min_interactions: int = 100      # per side, interactions with an outcome, before promoting or rolling back
    max_days: float = 7.0            # then decide by on_timeout
    on_timeout: str = "rollback"     # rollback (keep production: the default, conservative) | promote
    level: float = 0.95              # of the bootstrap interval
    resamples: int = 1000
    seed: int = 0


def problems(node) -> list[str]:
    """What is wrong with an `online` node (empty when fine)."""
    from eval.live import LIVE_METRICS

    node = dict(node or {})
    out = []
    if node.get("metric", "accept_rate") not in LIVE_METRICS:
        out.append(f"online.metric={node.get('metric')!r}: one of {', '.join(LIVE_METRICS)}")
    if node.get("rule", "non_inferior") not in RULES:
        out.append(f"online.rule={node.get('rule')!r}: one of {', '.join(RULES)}")
    if node.get("on_timeout", "rollback") not in TIMEOUT_RULES:
        out.append(f"online.on_timeout={node.get('on_timeout')!r}: one of {', '.join(TIMEOUT_RULES)}")
    if not 0.5 < float(node.get("level", 0.95)) < 1:
        out.append(f"online.level={node.get('level')}: a confidence level between 0.5 and 1")
    if float(node.get("margin", 0.0)) < 0:
        out.append(f"online.margin={node.get('margin')}: 0 or more (the rule says which side it is on)")
    return out


def settings(node) -> Online:
    found = problems(node)
    if found:
        raise EvalError("; ".join(found))
    return Online(**{k: v for k, v in dict(node or {}).items() if k in Online.__dataclass_fields__})


def _now() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------------- production's first target


def base_run_id(model: str) -> str:
    """`base-<last path part>`: the off-the-shelf model's run id (a safe file and model name)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(model).rstrip("/")).name).strip("-.") or "model"
    return f"base-{name}"


def ensure_production(con, base_model: str, *, pointer_dir: str | None) -> str:
    """Production's run; when nothing was ever promoted, the off-the-shelf `base_model`, registered
    as a run (`base-<name>`, no snapshot) and promoted with that reason."""
    from eval.registry import promote

    current = alias_target(con, PRODUCTION)
    if current is not None:
        return current
    run_id = base_run_id(base_model)
    local = Path(str(base_model))
    path = str(local.resolve()) if local.exists() else str(base_model)   # a hub id stays as written
    if not con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone():
        con.execute("INSERT INTO runs VALUES (?, NULL, 'base', ?, ?, ?, false, NULL, ?, ?)",
                    [run_id, path, path, str(base_model), json.dumps({"run_id": run_id, "base": True}), _now()])
    return promote(con, run_id, pointer_dir=pointer_dir, force=True,
                   reason="the off-the-shelf model: nothing was promoted yet")


def promote_to_canary(con, result: dict, *, pointer_dir: str | None, base_model: str) -> str:
    """The promote stage with `online.enabled`: the gate's winner becomes the canary; a canary
    still being verified is replaced (the move says so); production is never touched here."""
    from eval.registry import promote

    ensure_production(con, base_model, pointer_dir=pointer_dir)
    if alias_target(con, CANARY) == result["run_id"]:
        return result["run_id"]
    _clear_canary_for(con, result["run_id"], pointer_dir)
    return promote(con, result["run_id"], alias=CANARY, pointer_dir=pointer_dir, eval_id=result.get("eval_id"))


def _clear_canary_for(con, run_id: str, pointer_dir: str | None) -> None:
    """Roll back a pending canary other than `run_id` (the alias history says why): a canary
    promoted over another would bring the other back when it is rolled back."""
    from eval.registry import rollback

    pending = alias_target(con, CANARY)
    if pending not in (None, run_id):
        rollback(con, alias=CANARY, pointer_dir=pointer_dir, reason=f"replaced by {run_id} before its live check ended")


def verifies_live(con) -> bool:
    """Whether this store's promotions go through the live check: a canary was ever set (the
    promote stage with `online.enabled` sets one) or a live decision was ever recorded."""
    return bool(con.execute("SELECT (SELECT count(*) FROM aliases WHERE alias = ?) "
                            "+ (SELECT count(*) FROM live_decisions)", [CANARY]).fetchone()[0])


def promote_by_hand(con, run_ref: str, *, alias: str | None, pointer_dir: str | None, force: bool,
                    reason: str | None, skip_live_check: bool = False) -> tuple[str, str]:
    """`python -m eval promote`: (alias moved, run id). Where the store verifies live, a promote,
    forced or not, moves the canary (the live check decides production); moving production
    past it needs `skip_live_check` and a reason, so nothing skips the check by accident."""
    from eval.registry import check_alias, promotable, promote

    live = verifies_live(con)
    alias = check_alias(alias if alias is not None else (CANARY if live else PRODUCTION))
    if alias == PRODUCTION and live and not skip_live_check:
        raise EvalError("this store verifies promotions live (online.enabled): promote to the canary "
                        "(the default here) and let the verify stage decide, or pass --skip-live-check "
                        "with --reason to move production directly")
    if skip_live_check and not reason:
        raise EvalError("--skip-live-check needs --reason (it is recorded in the alias history)")
    if alias == CANARY:
        if alias_target(con, PRODUCTION) is None:
            raise EvalError("no production run to compare a canary with: promote one to production first "
                            "(python -m eval promote RUN --alias production)")
        run_id, _ = promotable(con, run_ref, force=force, reason=reason)    # checked before the old canary goes
        _clear_canary_for(con, run_id, pointer_dir)
    return alias, promote(con, run_ref, alias=alias, pointer_dir=pointer_dir, force=force, reason=reason)


# ----------------------------------------------------------------------------- the decision


def canary_since(con) -> tuple[datetime | None, str | None]:
    """(when the current canary took the alias, the offline eval id of that move)."""
    stack = alias_stack(con, CANARY)
    if not stack:
        return None, None
    row = con.execute("SELECT ts, eval_id FROM aliases WHERE alias = ? AND action = 'promote' AND run_id = ? "
                      "ORDER BY seq DESC LIMIT 1", [CANARY, stack[-1]]).fetchone()
    return (row[0], row[1]) if row else (None, None)


def decide(comparison, online: Online, age_days: float) -> tuple[str, list[str]]:
    """('promote' | 'rollback' | 'wait', reasons) from one live comparison (eval.live.LiveComparison)."""
    from eval.live import LIVE_METRICS

    c = comparison
    sign = 1.0 if LIVE_METRICS[online.metric] == "higher" else -1.0
    lo, hi = sorted((sign * c.ci_low, sign * c.ci_high))
    figures = (f"{online.metric} canary {c.candidate_value:.4f} vs production {c.baseline_value:.4f}, "
               f"diff {c.diff:+.4f}, {online.level:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}] "
               f"(bootstrap over users, stratified by app/task), n={c.n_candidate} vs {c.n_baseline}")
    threshold = -online.margin if online.rule == "non_inferior" else online.margin
    timed_out = age_days >= online.max_days
    few = min(c.n_candidate, c.n_baseline) < online.min_interactions
    if few or not all(math.isfinite(x) for x in (lo, hi)):
        why = (f"{min(c.n_candidate, c.n_baseline)} interactions with an outcome on the smaller side "
               f"(< online.min_interactions={online.min_interactions})" if few else "the interval is not defined")
        return _timeout(online, age_days, why) if timed_out else ("wait", [f"waiting: {why}; {figures}"])
    if lo > threshold:
        what = "not worse than production by more than" if online.rule == "non_inferior" else "better than production by"
        return "promote", [f"the canary is confidently {what} {online.margin:g} ({figures})"]
    if hi < 0:
        return "rollback", [f"the canary is confidently worse than production ({figures})"]
    why = f"the interval includes the threshold {threshold:+g} ({figures})"
    return _timeout(online, age_days, why) if timed_out else ("wait", [f"waiting: {why}"])


def _timeout(online: Online, age_days: float, why: str) -> tuple[str, list[str]]:
    return online.on_timeout, [f"no confident answer after {age_days:.1f} days (online.max_days="
                               f"{online.max_days:g}): online.on_timeout={online.on_timeout}; {why}"]


def sync_pointers(con, pointer_dir: str | None) -> None:
    """Rewrite both pointer files from the registry: a job killed after a move, before its
    files were written, leaves them right on the next run."""
    for alias in (PRODUCTION, CANARY):
        write_pointer(con, alias, pointer_dir)


def verify(con, online: Online, *, pointer_dir: str | None, now: datetime | None = None) -> dict:
    """Look at the canary once: record the decision, move the aliases; a summary dict."""
    from eval.live import compare

    sync_pointers(con, pointer_dir)
    canary = alias_target(con, CANARY)
    if canary is None:
        return {"decision": None, "note": "no canary to verify"}
    production = alias_target(con, PRODUCTION)
    if production is None:
        raise EvalError(f"canary {canary} has no production run to be compared with")
    now = now or _now()
    since, offline_eval = canary_since(con)
    comparison = compare(con, canary, production, metric=online.metric, since=since, until=now,
                         resamples=online.resamples, level=online.level, seed=online.seed)
    age_days = (now - since).total_seconds() / 86400 if since else 0.0
    decision, reasons = decide(comparison, online, age_days)
    decision_id = f"live-{now.strftime('%Y%m%dT%H%M%S%f')}-{canary}"
    with transaction(con):
        con.execute("INSERT INTO live_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            decision_id, canary, production, decision, online.metric, _f(comparison.candidate_value),
            _f(comparison.baseline_value), _f(comparison.diff), _f(comparison.ci_low), _f(comparison.ci_high),
            int(comparison.n_candidate), int(comparison.n_baseline), since, now, offline_eval,
            json.dumps(reasons), json.dumps(comparison.as_dict(), default=str), json.dumps(asdict(online)), now])
        if decision == "promote":
            _insert_move(con, PRODUCTION, "promote", canary, production, decision_id, f"live check: {reasons[0]}", now)
            _insert_move(con, CANARY, "rollback", None, canary, decision_id, "promoted to production", now)
        elif decision == "rollback":
            _insert_move(con, CANARY, "rollback", None, canary, decision_id, f"live check: {reasons[0]}", now)
    sync_pointers(con, pointer_dir)
    return {"decision": decision, "decision_id": decision_id, "canary": canary, "production": production,
            "reasons": reasons, "diff": comparison.diff, "ci": [comparison.ci_low, comparison.ci_high],
            "n": [comparison.n_candidate, comparison.n_baseline]}


def _insert_move(con, alias, action, run_id, previous, eval_id, reason, ts) -> None:
    """One alias move inside the caller's transaction (registry._move opens its own)."""
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM aliases").fetchone()[0]
    con.execute("INSERT INTO aliases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, alias, action, run_id, previous, eval_id, reason, ts])


# ----------------------------------------------------------------------------- offline vs live


def agreement(con) -> dict:
    """For each run the live check settled: the offline gate's figure beside the live one.

    {"rows": [{run_id, offline_decision, offline_metric, offline_diff, offline_ci, live_metric,
    live_diff, live_ci, live_decision, confirmed}], "confirmed": k, "settled": n} where a row is
    confirmed when an offline promote was promoted live too (a forced one has no offline
    promote to confirm, and is listed with offline_decision 'forced')."""
    rows = []
    for (decision_id, run_id, decision, metric, diff, lo, hi, n_c, n_b, offline_eval, created) in con.execute(
            "SELECT decision_id, run_id, decision, metric, diff, ci_low, ci_high, n_candidate, n_baseline, "
            "offline_eval_id, created_at FROM live_decisions WHERE decision <> 'wait' ORDER BY created_at").fetchall():
        off = None
        if offline_eval:
            off = con.execute("SELECT d.decision, d.gate_config FROM decisions d WHERE d.eval_id = ?",
                              [offline_eval]).fetchone()
        offline_decision, primary, o_diff, o_ci = "forced", None, None, None
        if off:
            offline_decision = off[0]
            primary = (json.loads(off[1] or "{}") or {}).get("primary")
            r = con.execute("SELECT diff, ci_low, ci_high FROM eval_results WHERE eval_id = ? AND metric = ?",
                            [offline_eval, primary]).fetchone()
            if r:
                o_diff, o_ci = r[0], [r[1], r[2]]
        rows.append({"run_id": run_id, "offline_decision": offline_decision, "offline_metric": primary,
                     "offline_diff": o_diff, "offline_ci": o_ci, "live_metric": metric, "live_diff": diff,
                     "live_ci": [lo, hi], "n": [n_c, n_b], "live_decision": decision,
                     "confirmed": offline_decision == "promote" and decision == "promote",
                     "decided_at": str(created), "decision_id": decision_id})
    offline = [r for r in rows if r["offline_decision"] == "promote"]
    return {"rows": rows, "confirmed": sum(r["confirmed"] for r in offline), "settled": len(offline)}


def live_history(con, run_id: str | None = None) -> list[dict]:
    q = ("SELECT decision_id, run_id, baseline_run_id, decision, metric, candidate, baseline, diff, ci_low, "
         "ci_high, n_candidate, n_baseline, window_start, window_end, reasons, created_at FROM live_decisions")
    rows = con.execute(q + (" WHERE run_id = ?" if run_id else "") + " ORDER BY created_at",
                       [run_id] if run_id else []).fetchall()
    keys = ("decision_id", "run_id", "baseline_run_id", "decision", "metric", "candidate", "baseline", "diff",
            "ci_low", "ci_high", "n_candidate", "n_baseline", "window_start", "window_end", "reasons", "created_at")
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for r in out:
        r["reasons"] = json.loads(r["reasons"] or "[]")
    return out

