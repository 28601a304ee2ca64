"""The model registry in the signal store (migration 0003_registry.sql).

runs          one row per evaluated run (manifest, snapshot version, serve path)
eval_results  one row per metric per evaluation (baseline, candidate, diff, CI, n, MDE)
decisions     one row per evaluation: promote | reject | inconclusive, reasons, configs
aliases       append-only log of alias moves; the current target is replayed from it
              (promote pushes a run, rollback pops back to the one before)

A run whose snapshot was revoked (`snapshots.revoked_at`, set by `signals forget`)
is tainted: shown as such and never promoted. Promoting writes a pointer file
`{pointer_dir}/{alias}.json` naming the served model directory; an alias is a file name,
so it must match `signals.recipe.SAFE_NAME` (no `/`, no `..`).

Every error and reason recorded with a decision passes `signals.secrets.scrub` first:
an error may quote an HTTP body that echoes an API key, and these rows are shown on the
dashboard. A run directory (`manifest.json`, the frozen `config.yaml`) is trusted input
only: it names the models that are loaded and served, and the config names code to run
(a judge's `callable:`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from eval import EvalError
from eval.latency import LATENCY_METRICS
from signals.secrets import from_env, scrub, scrub_all
from signals.store import transaction

PRODUCTION = "production"
LATENCY = tuple(LATENCY_METRICS)        # listed with each run's latest evaluation


def _now():
    return datetime.now(UTC)


def register_run(con, run) -> None:
    """Insert or refresh the run's row from its manifest."""
    con.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        run.run_id, run.exp_name, run.method, str(run.run_dir), str(run.serve_path),
        run.base_model, run.peft, run.snapshot_version, json.dumps(run.manifest, default=str), _now()])


def record_evaluation(con, *, eval_id: str, run_id: str, metrics: list, decision: dict,
                      gate_config: dict, eval_config: dict, baseline: str | None,
                      snapshot_version: str | None, examples_dir: str | None) -> None:
    """Store every metric row and the decision of one evaluation, atomically. The error,
    reasons and configs are scrubbed of secrets (the judge's key among them)."""
    now = _now()
    judge = (eval_config or {}).get("judge") if isinstance(eval_config, dict) else None
    known = from_env(judge.get("api_key_env") if isinstance(judge, dict) else None)
    reasons = scrub_all(list(decision.get("reasons", [])), known=known)
    error = scrub(decision.get("error"), known=known)
    gate_json = scrub(json.dumps(gate_config, default=str), known=known)
    eval_json = scrub(json.dumps(eval_config, default=str), known=known)
    with transaction(con):
        for m in metrics:
            con.execute("INSERT OR REPLACE INTO eval_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                eval_id, run_id, m.name, _f(m.baseline), _f(m.candidate), _f(m.diff), _f(m.ci_low),
                _f(m.ci_high), int(m.n), _f(m.mde), json.dumps(m.details, default=str), now])
        con.execute("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            eval_id, run_id, decision["decision"], json.dumps(reasons), gate_json, eval_json, baseline,
            snapshot_version, examples_dir, error, now])


def _f(x):
    """NaN is stored as NULL: the dashboard reads 'not computed', not a number."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if x != x else x


# ----------------------------------------------------------------------------- calibrations (0007)


CALIBRATION_COLUMNS = ("calibration_id", "predictor", "kind", "judge_key", "app", "exp_name", "snapshot_version",
                       "data_time", "n", "agreement", "ci_low", "ci_high", "kappa", "position_bias", "ece", "auc",
                       "details", "created_at")


def record_calibration(con, rows: list[dict]) -> None:
    """Store one `eval calibrate` job's rows (eval/calibrate.py), atomically."""
    now = _now()
    with transaction(con):
        for r in rows:
            r = {**r, "details": json.dumps(r.get("details") or {}, default=str), "created_at": now}
            for k in ("agreement", "ci_low", "ci_high", "kappa", "position_bias", "ece", "auc"):
                r[k] = _f(r.get(k))
            con.execute(f"INSERT OR REPLACE INTO calibrations VALUES ({', '.join('?' * len(CALIBRATION_COLUMNS))})",
                        [r.get(k) for k in CALIBRATION_COLUMNS])


def latest_calibration(con, judge_key: str) -> dict | None:
    """The newest all-apps calibration of the judge with these settings, with `age_days` of
    its data; None when it was never calibrated (or the store predates migration 0007)."""
    if not _has_table(con, "calibrations"):
        return None
    row = con.execute("SELECT calibration_id, predictor, snapshot_version, data_time, n, agreement, ci_low, "
                      "ci_high, kappa, position_bias, created_at FROM calibrations "
                      "WHERE judge_key = ? AND app = '*' ORDER BY created_at DESC LIMIT 1", [judge_key]).fetchone()
    if row is None:
        return None
    keys = ("calibration_id", "predictor", "snapshot_version", "data_time", "n", "agreement", "ci_low", "ci_high",
            "kappa", "position_bias", "created_at")
    out = dict(zip(keys, row, strict=True))
    out["age_days"] = (_now() - out["data_time"]).total_seconds() / 86400 if out["data_time"] else None
    return out


# ----------------------------------------------------------------------------- aliases


def alias_stack(con, alias: str = PRODUCTION) -> list[str]:
    """Targets the alias has pointed to, oldest first; the last is current."""
    stack: list[str] = []
    for action, run_id in con.execute("SELECT action, run_id FROM aliases WHERE alias = ? ORDER BY seq",
                                      [alias]).fetchall():
        if action == "promote":
            stack.append(run_id)
        elif stack:
            stack.pop()
    return stack


def alias_target(con, alias: str = PRODUCTION) -> str | None:
    stack = alias_stack(con, alias)
    return stack[-1] if stack else None


def _move(con, alias, action, run_id, previous, eval_id, reason) -> None:
    with transaction(con):
        seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM aliases").fetchone()[0]
        con.execute("INSERT INTO aliases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [seq, alias, action, run_id, previous, eval_id, reason, _now()])


def latest_decision(con, run_id: str) -> dict | None:
    row = con.execute("SELECT eval_id, decision, reasons, created_at FROM decisions WHERE run_id = ? "
                      "ORDER BY created_at DESC LIMIT 1", [run_id]).fetchone()
    if not row:
        return None
    return {"eval_id": row[0], "decision": row[1], "reasons": json.loads(row[2] or "[]"), "created_at": row[3]}


def resolve_run(con, ref: str) -> str:
    """A run id from a run id or a run directory path."""
    p = Path(ref)
    if (p / "manifest.json").is_file():
        run_id = json.loads((p / "manifest.json").read_text()).get("run_id") or p.name
    else:
        run_id = ref
    if not con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone():
        raise EvalError(f"run {ref!r} is not in the registry (evaluate it first: python -m eval ...)")
    return run_id


def _registered(con, run_dir: str) -> bool:
    run_id = json.loads((Path(run_dir) / "manifest.json").read_text()).get("run_id") or Path(run_dir).name
    return con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone() is not None


def check_alias(alias: str) -> str:
    """`alias` when it is a safe file name (`{pointer_dir}/{alias}.json`), else EvalError."""
    from signals.recipe import name_problem

    problem = name_problem(alias)
    if problem:
        raise EvalError(f"alias {alias!r}: {problem}")
    return alias


def promote(con, run_ref: str, *, alias: str = PRODUCTION, pointer_dir: str | None = None,
            force: bool = False, reason: str | None = None, eval_id: str | None = None) -> str:
    """Point `alias` at a run. Needs a `promote` decision unless forced (a forced promote of a run
    directory registers it when it was never evaluated); never a tainted run."""
    check_alias(alias)
    run_id, eval_id = promotable(con, run_ref, force=force, reason=reason, eval_id=eval_id)
    previous = alias_target(con, alias)
    if previous == run_id:
        return run_id
    _move(con, alias, "promote", run_id, previous, eval_id,
          reason or (f"gate decision {eval_id}" if eval_id else None))
    write_pointer(con, alias, pointer_dir)
    return run_id


def promotable(con, run_ref: str, *, force: bool, reason: str | None,
               eval_id: str | None = None) -> tuple[str, str | None]:
    """(run id, eval id) when the run may be promoted, else EvalError saying why; moves nothing."""
    if force and (Path(run_ref) / "manifest.json").is_file() and not _registered(con, run_ref):
        # a forced promote may name a run never evaluated
        from eval.runs import read_run

        register_run(con, read_run(run_ref))
    run_id = resolve_run(con, run_ref)
    bad, why = tainted(con, run_id)
    if bad:
        raise EvalError(f"run {run_id} is tainted ({why}); it cannot be promoted")
    last = latest_decision(con, run_id)
    if not force:
        if last is None or last["decision"] != "promote":
            got = last["decision"] if last else "no evaluation"
            raise EvalError(f"run {run_id}: latest decision is {got!r}, not 'promote'; "
                            "use --force with --reason to override")
        eval_id = eval_id or last["eval_id"]
    elif not reason:
        raise EvalError("promote --force needs --reason (it is recorded in the alias history)")
    return run_id, eval_id


def promote_if_allowed(store: str, result: dict, gate, *, pointer_dir: str | None, alias: str = PRODUCTION,
                       base_model: str | None = None) -> tuple[bool, str]:
    """The promote stage: move `alias` when `result` says promote and `gate.auto_promote` is on.
    `canary` (online.enabled) goes through `eval.verify.promote_to_canary`: production is then
    the off-the-shelf `base_model` until the live check promotes something."""
    from signals.store import store as open_store

    if result.get("decision") != "promote":
        return False, f"the gate said {result.get('decision')}"
    if not (gate or {}).get("auto_promote", False):
        return False, f"gate.auto_promote is off: promote by hand (python -m eval promote {result['run_id']})"
    with open_store(store) as con:
        try:
            if alias == PRODUCTION:
                promote(con, result["run_id"], pointer_dir=pointer_dir, eval_id=result.get("eval_id"))
            else:
                from eval.verify import promote_to_canary

                promote_to_canary(con, result, pointer_dir=pointer_dir, base_model=str(base_model))
        except EvalError as e:          # e.g. tainted snapshot: the decision stands, the alias stays
            return False, f"not promoted: {e}"
    return True, f"{alias} -> {result['run_id']}"


def rollback(con, *, alias: str = PRODUCTION, pointer_dir: str | None = None,
             reason: str | None = None) -> str | None:
    """Move `alias` back to the run it pointed to before the current one."""
    check_alias(alias)
    stack = alias_stack(con, alias)
    if not stack:
        raise EvalError(f"alias {alias!r} points to nothing; nothing to roll back")
    target = stack[-2] if len(stack) > 1 else None
    _move(con, alias, "rollback", target, stack[-1], None, reason)
    write_pointer(con, alias, pointer_dir)
    return target


def write_pointer(con, alias: str, pointer_dir: str | None) -> Path | None:
    """`{pointer_dir}/{alias}.json`: what a server loads ({"run_id", "model_path", ...})."""
    check_alias(alias)
    if not pointer_dir:
        return None
    path = Path(pointer_dir) / f"{alias}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    run_id = alias_target(con, alias)
    if run_id is None:
        body = {"alias": alias, "run_id": None, "model_path": None}
    else:
        row = con.execute("SELECT run_dir, model_path, base_model, peft FROM runs WHERE run_id = ?",
                          [run_id]).fetchone()
        body = {"alias": alias, "run_id": run_id, "run_dir": row[0], "model_path": row[1],
                "base_model": row[2], "peft": row[3]}
    body["updated_at"] = _now().isoformat()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)
    return path


def alias_history(con, alias: str | None = None) -> list[dict]:
    q = "SELECT seq, alias, action, run_id, previous_run_id, eval_id, reason, ts FROM aliases"
    rows = con.execute(q + (" WHERE alias = ?" if alias else "") + " ORDER BY seq",
                       [alias] if alias else []).fetchall()
    keys = ("seq", "alias", "action", "run_id", "previous_run_id", "eval_id", "reason", "ts")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# ----------------------------------------------------------------------------- taint and listing


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchone()[0])


def tainted(con, run_id: str) -> tuple[bool, str | None]:
    """(True, why) when the run's training snapshot was revoked (e.g. by `signals forget`)."""
    if not _has_table(con, "snapshots"):
        return False, None
    row = con.execute("SELECT s.version, s.revoked_at, s.revoked_reason FROM runs r "
                      "JOIN snapshots s ON s.version = r.snapshot_version "
                      "WHERE r.run_id = ? AND s.revoked_at IS NOT NULL", [run_id]).fetchone()
    if not row:
        return False, None
    return True, f"snapshot {row[0]} revoked at {row[1]}" + (f": {row[2]}" if row[2] else "")


def list_runs(con) -> list[dict]:
    """Every registered run with its latest decision, aliases, taint, and the latency
    figures of that evaluation ({metric: {baseline, candidate}}; {} when not measured)."""
    current = {}
    for (alias,) in con.execute("SELECT DISTINCT alias FROM aliases").fetchall():
        target = alias_target(con, alias)
        if target:
            current.setdefault(target, []).append(alias)
    out = []
    for run_id, exp, method, snap, model_path, ts in con.execute(
            "SELECT run_id, exp_name, method, snapshot_version, model_path, registered_at FROM runs "
            "ORDER BY registered_at").fetchall():
        last = latest_decision(con, run_id)
        bad, why = tainted(con, run_id)
        latency = {}
        if last:
            for name, base, cand in con.execute(
                    "SELECT metric, baseline, candidate FROM eval_results WHERE eval_id = ? AND metric IN "
                    f"({', '.join('?' * len(LATENCY))}) ORDER BY metric", [last["eval_id"], *LATENCY]).fetchall():
                latency[name] = {"baseline": base, "candidate": cand}
        out.append({"run_id": run_id, "exp_name": exp, "method": method, "snapshot_version": snap,
                    "model_path": model_path, "registered_at": str(ts),
                    "decision": last["decision"] if last else None,
                    "reasons": last["reasons"] if last else [],
                    "eval_id": last["eval_id"] if last else None,
                    "aliases": current.get(run_id, []), "tainted": bad, "taint_reason": why,
                    "latency": latency})
    return out
