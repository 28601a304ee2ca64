"""The live check (eval/verify.py) on constructed stores: the decision rule, its registry
record and alias moves, offline-vs-live agreement, and a verify stage resumed after SIGKILL."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from datetime import timedelta

import pytest

from eval import EvalError
from eval.registry import alias_history, alias_target, promote
from eval.verify import (
    Online,
    agreement,
    base_run_id,
    canary_since,
    ensure_production,
    live_history,
    problems,
    promote_by_hand,
    promote_to_canary,
    verify,
)
from signals.ingest import ingest_paths
from signals.store import open_store
from tests.conftest import ROOT


def add_run(con, run_id: str, path) -> None:
    con.execute("INSERT INTO runs VALUES (?, 'demo', 'sft', ?, ?, 'base', true, NULL, '{}', now())",
                [run_id, str(path), str(path)])


def traffic(con, tmp_path, start, *, p_canary: float, p_prod: float, users: int = 30, per_user: int = 4,
            canary: str = "cand", production: str | None = None, seed: int = 0, name: str = "day") -> None:
    """Users on both sides after `start`; each answer accepted with its side's probability, else rejected."""
    production = production or alias_target(con, "production")
    rng = random.Random(seed)
    records = []
    for side, model, p in (("c", canary, p_canary), ("p", production, p_prod)):
        for u in range(users):
            for k in range(per_user):
                iid = f"{name}-{side}{u}-{k}"
                ts = start + timedelta(minutes=5 + k)
                records.append({"interaction_id": iid, "ts": ts.isoformat(), "user_id": f"{side}{u}",
                                "app": ["support", "sql"][k % 2], "task": "t", "model_id": model,
                                "prompt": "q", "completion": "an answer",
                                "feedback": [{"event_id": f"e-{iid}", "ts": (ts + timedelta(minutes=1)).isoformat(),
                                              "kind": "accept" if rng.random() < p else "reject"}]})
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    con.close()
    ingest_paths([path], str(tmp_path / "store.duckdb"), progress=False)


@pytest.fixture
def registry(tmp_path):
    """A store whose production is the off-the-shelf model and whose canary is run `cand` (forced)."""
    db = tmp_path / "store.duckdb"
    con = open_store(db)
    pointers = tmp_path / "runs"
    assert ensure_production(con, str(tmp_path / "models" / "base"), pointer_dir=str(pointers)) == "base-base"
    add_run(con, "cand", tmp_path / "cand" / "adapter")
    promote(con, "cand", alias="canary", pointer_dir=str(pointers), force=True, reason="test")
    since, _ = canary_since(con)
    con.close()
    return db, pointers, since


def reopen(db):
    return open_store(db)


ONLINE = Online(enabled=True, min_interactions=40, max_days=3, margin=0.0, resamples=400)


def test_a_true_improvement_is_promoted_and_recorded(registry, tmp_path):
    db, pointers, since = registry
    traffic(open_store(db), tmp_path, since, p_canary=0.8, p_prod=0.3)
    with reopen(db) as con:
        out = verify(con, ONLINE, pointer_dir=str(pointers), now=since + timedelta(days=1))
        assert out["decision"] == "promote", out
        assert out["diff"] > 0.3 and out["ci"][0] > 0
        assert alias_target(con, "production") == "cand" and alias_target(con, "canary") is None
        moves = alias_history(con)[-2:]
        assert [(m["alias"], m["action"]) for m in moves] == [("production", "promote"), ("canary", "rollback")]
        assert moves[0]["eval_id"] == out["decision_id"] and "live check" in moves[0]["reason"]
        row = live_history(con)[-1]
        assert row["decision"] == "promote" and row["n_candidate"] == 120 and row["baseline_run_id"] == "base-base"
        agree = agreement(con)
        assert agree["rows"][0]["offline_decision"] == "forced" and agree["settled"] == 0
    assert json.loads((pointers / "production.json").read_text())["run_id"] == "cand"
    assert json.loads((pointers / "canary.json").read_text())["run_id"] is None


def test_a_true_regression_is_rolled_back(registry, tmp_path):
    db, pointers, since = registry
    traffic(open_store(db), tmp_path, since, p_canary=0.2, p_prod=0.7)
    with reopen(db) as con:
        out = verify(con, ONLINE, pointer_dir=str(pointers), now=since + timedelta(days=1))
        assert out["decision"] == "rollback" and out["ci"][1] < 0, out
        assert alias_target(con, "production") == "base-base" and alias_target(con, "canary") is None
        assert "confidently worse" in live_history(con)[-1]["reasons"][0]


def test_an_inconclusive_canary_waits_then_the_timeout_rule_decides(registry, tmp_path):
    db, pointers, since = registry
    traffic(open_store(db), tmp_path, since, p_canary=0.5, p_prod=0.5, seed=3)
    with reopen(db) as con:
        out = verify(con, ONLINE, pointer_dir=str(pointers), now=since + timedelta(days=1))
        assert out["decision"] == "wait" and out["ci"][0] < 0 < out["ci"][1], out
        assert alias_target(con, "canary") == "cand"
        late = verify(con, ONLINE, pointer_dir=str(pointers), now=since + timedelta(days=3.5))
        assert late["decision"] == "rollback" and "online.max_days=3" in late["reasons"][0]
        assert [h["decision"] for h in live_history(con)] == ["wait", "rollback"]


def test_too_few_interactions_wait(registry, tmp_path):
    db, pointers, since = registry
    traffic(open_store(db), tmp_path, since, p_canary=0.9, p_prod=0.1, users=5, per_user=2)
    with reopen(db) as con:
        out = verify(con, ONLINE, pointer_dir=str(pointers), now=since + timedelta(days=1))
        assert out["decision"] == "wait" and "online.min_interactions=40" in out["reasons"][0]


def test_lower_is_better_metrics_are_turned_around(registry, tmp_path):
    db, pointers, since = registry
    traffic(open_store(db), tmp_path, since, p_canary=0.8, p_prod=0.3)      # the canary is rejected less
    with reopen(db) as con:
        out = verify(con, Online(enabled=True, metric="reject_rate", min_interactions=40, resamples=400),
                     pointer_dir=str(pointers), now=since + timedelta(days=1))
        assert out["decision"] == "promote" and out["diff"] < 0


def test_the_gates_winner_goes_to_canary_and_replaces_a_pending_one(tmp_path):
    with open_store(tmp_path / "s.duckdb") as con:
        for run in ("r1", "r2"):
            add_run(con, run, tmp_path / run)
            con.execute("INSERT INTO decisions VALUES (?, ?, 'promote', '[]', ?, '{}', 'base', NULL, NULL, NULL, now())",
                        [f"ev-{run}", run, json.dumps({"primary": "winrate"})])
        ptr = str(tmp_path / "runs")
        promote_to_canary(con, {"run_id": "r1", "eval_id": "ev-r1"}, pointer_dir=ptr, base_model="models/base")
        assert alias_target(con, "production") == base_run_id("models/base") == "base-base"
        promote_to_canary(con, {"run_id": "r2", "eval_id": "ev-r2"}, pointer_dir=ptr, base_model="models/base")
        assert alias_target(con, "canary") == "r2" and canary_since(con)[1] == "ev-r2"
        assert "replaced by r2" in alias_history(con, "canary")[-2]["reason"]
        assert alias_target(con, "production") == "base-base"          # the gate never moves production here


def test_a_forced_promote_by_hand_is_still_verified_live(registry, tmp_path, capsys):
    """In a store that verifies live, `eval promote --force` moves the canary (replacing the
    pending one), never production; production directly needs --skip-live-check and a reason."""
    from eval.__main__ import main

    db, pointers, _ = registry
    with reopen(db) as con:
        add_run(con, "hotfix", tmp_path / "hotfix")
    common = ["--store", str(db), "--pointer-dir", str(pointers)]
    assert main(["promote", "hotfix", "--force", "--reason", "by hand", *common]) == 0
    assert "canary -> hotfix" in capsys.readouterr().out
    with reopen(db) as con:
        assert alias_target(con, "canary") == "hotfix" and alias_target(con, "production") == "base-base"
        assert "replaced by hotfix" in alias_history(con, "canary")[-2]["reason"]
        with pytest.raises(EvalError, match="verifies promotions live"):
            promote_by_hand(con, "hotfix", alias="production", pointer_dir=None, force=True, reason="r")
        with pytest.raises(EvalError, match="needs --reason"):
            promote_by_hand(con, "hotfix", alias="production", pointer_dir=None, force=True, reason=None,
                            skip_live_check=True)
        with pytest.raises(EvalError, match="not 'promote'"):      # a refused promote keeps the pending canary
            promote_by_hand(con, "cand", alias=None, pointer_dir=None, force=False, reason=None)
        assert alias_target(con, "canary") == "hotfix"
        assert promote_by_hand(con, "hotfix", alias="production", pointer_dir=None, force=True,
                               reason="incident", skip_live_check=True) == ("production", "hotfix")
    assert json.loads((pointers / "canary.json").read_text())["run_id"] == "hotfix"


def test_a_store_without_live_checks_promotes_production(tmp_path):
    with open_store(tmp_path / "s.duckdb") as con:
        add_run(con, "r", tmp_path)
        assert promote_by_hand(con, "r", alias=None, pointer_dir=None, force=True, reason="t") == ("production", "r")


def test_online_settings_are_checked():
    assert problems({"metric": "accept"})[0].startswith("online.metric='accept'")
    assert problems({"rule": "better"}) and problems({"on_timeout": "wait"}) and problems({"level": 1.2})
    assert problems({"metric": "reject_rate", "margin": 0.02}) == []


def test_no_canary_is_nothing_to_do(tmp_path):
    with open_store(tmp_path / "s.duckdb") as con:
        assert verify(con, ONLINE, pointer_dir=None)["decision"] is None
        add_run(con, "c", tmp_path)
        promote(con, "c", alias="canary", force=True, reason="t")
        with pytest.raises(EvalError, match="no production run"):
            verify(con, ONLINE, pointer_dir=None)


KILLER = """
import os, signal, sys
from datetime import datetime, timedelta
import eval.verify as v
from signals.store import open_store
calls = []
real = v.write_pointer
def write_pointer(con, alias, pointer_dir):
    calls.append(alias)
    if len(calls) > 2:             # the first two rewrite the files before the decision; this one follows it
        os.kill(os.getpid(), signal.SIGKILL)
    return real(con, alias, pointer_dir)
v.write_pointer = write_pointer
con = open_store(sys.argv[1])
v.verify(con, v.Online(enabled=True, min_interactions=40, resamples=400), pointer_dir=sys.argv[2],
         now=datetime.fromisoformat(sys.argv[3]))
"""


def test_the_scheduled_job_resumes_a_verify_stage_killed_after_its_decision(registry, tmp_path):
    """SIGKILL between the registry's commit and the pointer files: the next verify stage of the
    scheduled job (scripts.stages) leaves files and registry in agreement, decided once."""
    from scripts import stages
    from scripts.config import compose

    db, pointers, since = registry
    traffic(open_store(db), tmp_path, since, p_canary=0.8, p_prod=0.3)
    res = subprocess.run([sys.executable, "-c", KILLER, str(db), str(pointers),
                          (since + timedelta(days=1)).isoformat()], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert json.loads((pointers / "production.json").read_text())["run_id"] == "base-base"   # stale
    cfg = compose(["online.enabled=true", f"store={db}", f"output_root={tmp_path / 'out'}",
                   f"eval.registry.pointer_dir={pointers}", "online.min_interactions=40"])
    ctx = stages.run(stages.Context(cfg, log=lambda *a, **k: {}), ["verify"])
    assert ctx.verified["decision"] is None                     # decided once, before the kill
    assert json.loads((pointers / "production.json").read_text())["run_id"] == "cand"
    assert json.loads((pointers / "canary.json").read_text())["run_id"] is None
    with reopen(db) as con:
        assert [h["decision"] for h in live_history(con)] == ["promote"]


def test_the_dashboard_has_a_live_page(registry, tmp_path):
    from eval.dashboard.build import build_site

    db, pointers, since = registry
    traffic(open_store(db), tmp_path, since, p_canary=0.8, p_prod=0.3)
    with reopen(db) as con:
        verify(con, ONLINE, pointer_dir=str(pointers), now=since + timedelta(days=1))
    pages = build_site(db, tmp_path / "site")
    live = (tmp_path / "site" / "live.html").read_text()
    assert tmp_path / "site" / "live.html" in pages and 'href="live.html"' in (tmp_path / "site" / "index.html").read_text()
    assert "live-rates" in live and "live-diffs" in live          # both charts drawn
    assert "<b>promote</b>" in live and "cand" in live and "base-base" in live
    assert "the off-the-shelf model: nothing was promoted yet" in live      # the alias history
