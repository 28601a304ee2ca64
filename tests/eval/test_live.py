"""Live metrics (eval/live.py): rates on a real store, the build's outcome rules, the
Simpson's-paradox case, and the coverage of the user bootstrap by simulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from eval import live
from signals.build.steps import sql as build_sql
from signals.ingest import ingest_paths
from signals.store import open_store
from tests.signals.store_helpers import T0, TinyStore


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rec(iid, model, user, *, app="support", task="reply", ts="2026-01-01T10:00:00Z", completion="the answer text",
        latency=None, feedback=()):
    r = {"interaction_id": iid, "ts": ts, "user_id": user, "app": app, "task": task, "model_id": model,
         "prompt": [{"role": "user", "content": f"question {iid}"}], "completion": completion,
         "feedback": [{"event_id": f"{iid}-{k}", "kind": kind, "ts": f"2026-01-01T11:{k:02d}:00Z", **extra}
                      for k, (kind, extra) in enumerate(feedback)]}
    if latency is not None:
        r["metadata"] = {"latency_ms": latency, "ttft_ms": latency / 4, "alias": "canary", "source": "gateway"}
    return r


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """Two models, ingested from JSONL the way the gateway's records arrive (once: the tests read it)."""
    tmp_path = tmp_path_factory.mktemp("live")
    records = [
        rec("a1", "A", "u1", latency=100, feedback=[("accept", {})]),
        rec("a2", "A", "u1", latency=300, feedback=[("reject", {})]),
        rec("a3", "A", "u2", feedback=[("edit", {"edited_text": "a completely different answer"}),
                                       ("accept", {})]),                              # accept keeps the edit
        rec("a4", "A", "u2", app="sql", feedback=[("rate", {"score": 5})]),             # rating 5: accept
        rec("a5", "A", "u3", app="sql", feedback=[("rate", {"score": 3})]),             # 3: no outcome
        rec("a6", "A", "u3", ts="2026-01-02T09:00:00Z"),                               # no feedback
        rec("b1", "B", "v1", latency=50, feedback=[("edit", {"edited_text": "the answer text "})]),  # trivial
        rec("b2", "B", "v1", feedback=[("accept", {}), ("choose", {"other_interaction_id": "a1"})]),
        rec("b3", "B", "v2", app="sql", feedback=[("reject", {}), ("rate", {"score": 1})]),
    ]
    db = tmp_path / "store.duckdb"
    got = ingest_paths([write_jsonl(tmp_path / "log.jsonl", records)], db, progress=False)
    assert got["interactions"] == 9 and got["quarantined"] == 0
    con = open_store(db)
    yield con
    con.close()


def test_daily_rates_on_a_small_store(small_store):
    rows = {(r["model_id"], r["app"], r["day"].day): r for r in live.daily_rates(small_store)}
    a = rows[("A", "support", 1)]
    assert (a["n"], a["n_outcome"], a["users"]) == (3, 3, 2)
    assert (a["accept_rate"], a["reject_rate"], a["edit_rate"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert a["latency_ms"] == pytest.approx(200.0) and a["latency_ms_n"] == 2
    assert a["edit_change"] > 0.5 and a["edit_change_n"] == 1
    assert a["choice_win_rate"] == 0.0 and a["choice_win_rate_n"] == 1       # a1 lost b2's choice
    sql_a = rows[("A", "sql", 1)]
    assert (sql_a["n"], sql_a["n_outcome"], sql_a["accept_rate"], sql_a["mean_rating"]) == (2, 1, 1.0, 4.0)
    assert rows[("A", "support", 2)]["n_outcome"] == 0 and math.isnan(rows[("A", "support", 2)]["accept_rate"])
    b = rows[("B", "support", 1)]
    assert (b["n"], b["n_outcome"], b["accept_rate"], b["choice_win_rate"]) == (2, 1, 1.0, 1.0)
    assert math.isnan(b["edit_change"])                                       # the trivial edit is no edit
    assert rows[("B", "sql", 1)]["reject_rate"] == 1.0 and rows[("B", "sql", 1)]["mean_rating"] == 1.0
    hours = live.daily_rates(small_store, models=["B"], bucket="hour", until="2026-01-01T12:00:00Z")
    assert {r["hour"].hour for r in hours} == {10} and sum(r["n"] for r in hours) == 3
    assert live.daily_rates(small_store, since="2026-01-02T00:00:00+00:00")[0]["n"] == 1
    assert live.daily_rates(small_store, since="2026-01-02")[0]["n"] == 1              # naive is UTC


def test_compare_with_no_data_gives_nan_and_a_reason(small_store):
    c = live.compare(small_store, "B", "A", metric="edit_change", resamples=50)     # B's one edit is trivial
    assert math.isnan(c.diff) and math.isnan(c.ci_low) and math.isnan(c.candidate_value)
    assert c.reason == "no interactions whose outcome is an edit for B in the window"
    c = live.compare(small_store, "B", "A", metric="latency_ms", resamples=50)      # one user a side
    assert c.diff == pytest.approx(50 - 200) and c.users_candidate == 1
    c = live.compare(small_store, "nobody", "A", resamples=50)
    assert math.isnan(c.diff) and "nobody" in c.reason
    assert json.dumps(c.as_dict(), default=str)
    with pytest.raises(ValueError, match="unknown live metric"):
        live.compare(small_store, "B", "A", metric="accept")


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("rules", [{}, {"choose_as_outcome": True, "trivial_edit": "accept",
                                        "accept_keeps_edit": False}])
def test_outcomes_are_the_builds(tmp_path, rules, narrow):
    """Per interaction, the outcome live metrics use is build_outcomes.sql's, on the cases its rules name."""
    s = TinyStore(tmp_path / "s.duckdb")
    t = T0
    cases = [
        [("accept", {})], [("reject", {})], [("edit", {"edited_text": "Totally rewritten reply."})],
        [("edit", {"edited_text": "an answer  "})], [("edit", {"edited_text": "  "})],
        [("edit", {"edited_text": "Totally rewritten reply."}), ("accept", {})],
        [("accept", {}), ("reject", {})], [("rate", {"score": 4})], [("rate", {"score": 3})],
        [("rate", {"score": 2}), ("accept", {})], [("edit", {"edited_text": "an answer"}), ("reject", {})],
        [("accept", {}), ("reject", {}), ("edit", {"edited_text": "new text"})],   # all at one time
        [],
    ]
    ids = []
    for k, events in enumerate(cases):
        iid = s.interaction(f"q{k}", "an answer", user=f"u{k % 3}", ts=t)
        ids.append(iid)
        same_time = k == 11
        for kind, extra in events:
            s.feedback(iid, kind, ts=t if same_time else None, **{"edited_text": extra.get("edited_text"),
                                                                  "score": extra.get("score")})
    s.feedback(ids[0], "choose", other=ids[1])
    r = live.outcome_rules(**rules)
    con = s.con
    con.execute("CREATE OR REPLACE TEMP TABLE build_interactions AS "
                "SELECT interaction_id, row_number() OVER (ORDER BY interaction_id) AS rid, NULL AS excluded "
                "FROM interactions")
    for name, typ, value in [("b_min_edit", "DOUBLE", r["min_edit_distance"]),
                             ("b_rate_accept", "DOUBLE", r["rate_accept_at"]),
                             ("b_rate_reject", "DOUBLE", r["rate_reject_at"]),
                             ("b_choose_outcome", "BOOLEAN", r["choose_as_outcome"]),
                             ("b_trivial_edit", "VARCHAR", r["trivial_edit"]),
                             ("b_accept_keeps_edit", "BOOLEAN", r["accept_keeps_edit"])]:
        con.execute(f"SET VARIABLE {name} = CAST(? AS {typ})", [value])
    con.execute(build_sql("build_macros"))
    con.execute(build_sql("build_outcomes"))
    built = dict(con.execute("SELECT b.interaction_id, o.outcome::VARCHAR FROM build_interactions b "
                             "LEFT JOIN build_outcomes o USING (rid)").fetchall())
    ours = dict(con.execute(
        f"SELECT interaction_id, outcome FROM ({live.per_interaction_sql(['accept_rate'], narrow)})",
        {"since": None, "until": None, "models": None, "min_edit": r["min_edit_distance"],
         "rate_accept": r["rate_accept_at"], "rate_reject": r["rate_reject_at"],
         "choose_outcome": r["choose_as_outcome"], "trivial_edit": r["trivial_edit"],
         "accept_keeps_edit": r["accept_keeps_edit"]}).fetchall())
    assert ours == built
    assert len(set(built.values())) >= 3
    if not rules:                   # the materialized table holds the default rules' outcomes
        assert live.refresh_outcomes(con)["mode"] == "full"
        assert dict(con.execute("SELECT interaction_id, outcome FROM live_outcomes").fetchall()) == built
    s.close()


# ---- the materialized outcomes (live_outcomes, refresh_outcomes) -------------------------

def same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == pytest.approx(b) if isinstance(a, (int, float)) else a == b


def assert_paths_agree(con, models=("A", "B")):
    """daily_rates and compare from live_outcomes equal the on-the-fly query's, every metric."""
    table, query = live.daily_rates(con), live.daily_rates(con, source="query")
    assert len(table) == len(query) and table
    for t, q in zip(table, query, strict=True):
        assert t.keys() == q.keys() and all(same(t[k], q[k]) for k in t), (t, q)
    for metric in live.LIVE_METRICS:
        t = live.compare(con, *models, metric=metric, resamples=50)
        q = live.compare(con, *models, metric=metric, resamples=50, source="query")
        assert t.details["outcomes"]["source"] == "live_outcomes" and q.details["outcomes"]["source"] == "on the fly"
        for k in ("diff", "ci_low", "ci_high", "pooled_diff", "n_candidate", "n_baseline", "users_candidate"):
            assert same(getattr(t, k), getattr(q, k)), (metric, k)
        assert len(t.strata) == len(q.strata) and t.reason == q.reason
        assert all(same(a[k], b[k]) for a, b in zip(t.strata, q.strata, strict=True) for k in a)


def test_the_table_gives_the_on_the_fly_results(small_store):
    assert_paths_agree(small_store)
    assert live.staleness(small_store) is None
    assert live.refresh_outcomes(small_store)["mode"] == "current"
    c = live.compare(small_store, "B", "A", rules={"rate_accept_at": 5}, resamples=20)
    assert c.details["outcomes"]["source"] == "on the fly" and "non-default" in c.details["outcomes"]["why"]


def test_refresh_is_incremental_late_feedback_updates_the_row_and_read_only_never_reads_stale(tmp_path):
    first = [rec("a1", "A", "u1", feedback=[("accept", {})]), rec("a2", "A", "u2", feedback=[("accept", {})]),
             rec("b1", "B", "v1", feedback=[("reject", {})]), rec("b2", "B", "v2", feedback=[("accept", {})])]
    db = tmp_path / "store.duckdb"
    ingest_paths([write_jsonl(tmp_path / "1.jsonl", first)], db, progress=False)
    con = open_store(db)
    r = live.refresh_outcomes(con)
    assert (r["mode"], r["recomputed"], r["rows"]) == ("full", 4, 4)
    assert live.refresh_outcomes(con)["mode"] == "current"
    con.close()
    # later: a reject for a1 (after its accept), a choice b2 over a2, and a new interaction
    late = [{"event_id": "late-1", "interaction_id": "a1", "kind": "reject", "ts": "2026-01-03T09:00:00Z"},
            {"event_id": "late-2", "interaction_id": "b2", "kind": "choose", "other_interaction_id": "a2",
             "ts": "2026-01-03T09:00:00Z"},
            rec("b3", "B", "v1", feedback=[("reject", {})])]
    ingest_paths([write_jsonl(tmp_path / "2.jsonl", late)], db, progress=False)
    ro = open_store(db, read_only=True)                  # the dashboard: cannot refresh, must not read stale rows
    assert "ingests 2..2 came after the last refresh" in live.staleness(ro)
    c = live.compare(ro, "A", "B", resamples=20)
    assert c.details["outcomes"]["source"] == "on the fly" and "stale" in c.details["outcomes"]["why"]
    assert c.pooled_candidate == 0.5                    # a1's late reject counts
    ro.close()
    con = open_store(db)
    r = live.refresh_outcomes(con)
    assert (r["mode"], r["touched"], r["removed"], r["recomputed"], r["rows"]) == ("incremental", 4, 3, 4, 5)
    got = dict(con.execute("SELECT interaction_id, (outcome, wins, losses) FROM live_outcomes").fetchall())
    assert got["a1"] == ("reject", 0, 0) and got["a2"] == ("accept", 0, 1) and got["b2"] == ("accept", 1, 0)
    assert got["b3"] == ("reject", 0, 0) and got["b1"] == ("reject", 0, 0)
    assert_paths_agree(con, ("A", "B"))
    # a row written without an ingest id carries no watermark: the next refresh rebuilds all
    con.execute("INSERT INTO feedback (event_id, interaction_id, ts, kind) VALUES ('hand', 'a2', ?, 'reject')",
                ["2026-01-04T00:00:00Z"])
    assert "without an ingest id" in live.staleness(con)
    r = live.refresh_outcomes(con)
    assert r["mode"] == "full" and "without an ingest id" in r["reason"]
    assert con.execute("SELECT outcome FROM live_outcomes WHERE interaction_id = 'a2'").fetchone() == ("reject",)
    con.close()
    ro = open_store(db, read_only=True)
    assert live.compare(ro, "A", "B", resamples=20).details["outcomes"]["source"] == "live_outcomes"
    ro.close()


def test_forget_and_retention_leave_no_row_and_mark_what_they_changed(tmp_path):
    from signals.privacy import forget, retain

    records = [rec("a1", "A", "u1", feedback=[("accept", {})]), rec("a2", "A", "u2", feedback=[("accept", {})]),
               rec("b1", "B", "v1", feedback=[("accept", {}), ("choose", {"other_interaction_id": "a1"})]),
               rec("old", "B", "v2", ts="2025-01-01T00:00:00Z")]
    db = tmp_path / "store.duckdb"
    ingest_paths([write_jsonl(tmp_path / "1.jsonl", records)], db, progress=False)
    con = open_store(db)
    live.refresh_outcomes(con)
    assert con.execute("SELECT wins FROM live_outcomes WHERE interaction_id = 'b1'").fetchone() == (1,)
    forget(con, ["u1"])                                   # b1's win was over u1's answer
    assert con.execute("SELECT count(*) FROM live_outcomes WHERE user_id = 'u1' OR interaction_id = 'a1'"
                       ).fetchone() == (0,)
    assert "changed by forget/retention" in live.staleness(con)
    r = live.refresh_outcomes(con)
    assert r["mode"] == "incremental" and r["touched"] == 1     # b1 (a1's own mark went with it)
    assert con.execute("SELECT wins FROM live_outcomes WHERE interaction_id = 'b1'").fetchone() == (0,)
    retain(con, days=30, now=live._ts("2026-01-10"))
    assert con.execute("SELECT count(*) FROM live_outcomes WHERE interaction_id = 'old'").fetchone() == (0,)
    assert_paths_agree(con, ("A", "B"))
    con.close()


def bulk_insert(con, *, iid, ts, user, app, model, accepted):
    """Interactions with one accept or reject each, inserted from lists in two statements."""
    con.execute("INSERT INTO interactions (interaction_id, ts, user_id, app, task, model_id, prompt, completion) "
                "SELECT iid, ts, u, a, 'reply', m, '[]', 'answer' FROM "
                "(SELECT unnest(?) AS iid, unnest(?) AS ts, unnest(?) AS u, unnest(?) AS a, unnest(?) AS m)",
                [iid, ts, user, app, model])
    con.execute("INSERT INTO feedback (event_id, interaction_id, ts, kind) "
                "SELECT 'e' || iid, iid, ts + INTERVAL 1 MINUTE, CASE WHEN y THEN 'accept' ELSE 'reject' END FROM "
                "(SELECT unnest(?) AS iid, unnest(?) AS ts, unnest(?) AS y)", [iid, ts, accepted])


def test_simpsons_paradox_the_stratified_diff_keeps_the_sign(tmp_path):
    """The candidate is better in each app, but got most of the hard app's traffic: pooled, it looks worse."""
    rng = np.random.default_rng(7)
    p = {("cand", "easy"): 0.95, ("cand", "hard"): 0.30, ("base", "easy"): 0.85, ("base", "hard"): 0.20}
    share_hard = {"cand": 0.8, "base": 0.2}
    iid, ts, user, app, model, accepted = [], [], [], [], [], []
    for m in ("cand", "base"):
        for u in range(200):                         # users are in one arm; 20 interactions each
            for k in range(20):
                a = "hard" if rng.random() < share_hard[m] else "easy"
                iid.append(f"{m}-{u}-{k}")
                ts.append(T0)
                user.append(f"{m}-u{u}")
                app.append(a)
                model.append(m)
                accepted.append(bool(rng.random() < p[(m, a)]))
    con = open_store(tmp_path / "s.duckdb")
    bulk_insert(con, iid=iid, ts=ts, user=user, app=app, model=model, accepted=accepted)
    c = live.compare(con, "cand", "base", metric="accept_rate", resamples=500)
    print(f"pooled diff {c.pooled_diff:+.3f}; stratified {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]")
    assert c.pooled_diff < -0.2
    assert c.diff > 0 and c.ci_low > 0
    assert all(s["diff"] > 0 for s in c.strata) and sum(s["weight"] for s in c.strata) == pytest.approx(1)
    assert (c.users_candidate, c.users_baseline, c.n_candidate, c.n_baseline) == (200, 200, 4000, 4000)
    # a stratum only one model served does not count, and is named
    bulk_insert(con, iid=["x1"], ts=[T0], user=["cand-u0"], app=["new"], model=["cand"], accepted=[True])
    c2 = live.compare(con, "cand", "base", metric="accept_rate", resamples=200)
    assert c2.diff == pytest.approx(c.diff) and c2.details["strata_dropped"] == [{"app": "new", "task": "reply"}]
    # unstratified, the comparison is the pooled one
    c3 = live.compare(con, "cand", "base", metric="accept_rate", strata=(), resamples=200)
    assert c3.diff == pytest.approx(c2.pooled_diff) and c3.ci_high < 0
    con.close()


def test_one_interaction_per_user_the_two_bootstraps_agree():
    rng = np.random.default_rng(1)
    y_c, y_b = rng.random(300) < 0.6, rng.random(300) < 0.5
    u = live.user_bootstrap(y_c[:, None], np.ones((300, 1)), y_b[:, None], np.ones((300, 1)), seed=3)
    i = live.interaction_bootstrap(y_c.astype(float), y_b.astype(float), seed=3)
    assert (u.diff, u.ci_low, u.ci_high) == pytest.approx((i.diff, i.ci_low, i.ci_high))


def test_user_bootstrap_covers_and_the_interaction_bootstrap_does_not():
    """Users with random effects (logit sd 1.5), 80 users an arm, 8 interactions each; the
    true difference is known. The user bootstrap's 95% interval covers near 95%; treating
    the interactions as independent under-covers."""
    datasets, users, per_user, sd = 300, 80, 8, 1.5
    intercept = {"cand": 0.4, "base": 0.0}
    x, w = np.polynomial.hermite_e.hermegauss(80)            # E[sigmoid(a + sd Z)], Z ~ N(0, 1)
    truth = {m: float((w / w.sum()) @ (1 / (1 + np.exp(-(a + sd * x))))) for m, a in intercept.items()}
    true_diff = truth["cand"] - truth["base"]
    rng = np.random.default_rng(2026)
    y = {}
    for m, a in intercept.items():          # (datasets, users, interactions), all at once
        p = 1 / (1 + np.exp(-(a + sd * rng.standard_normal((datasets, users, 1)))))
        y[m] = (rng.random((datasets, users, per_user)) < p).astype(float)
    covered = {"user": 0, "interaction": 0}
    ones = np.full((users, 1), float(per_user))
    for d in range(datasets):
        u = live.user_bootstrap(y["cand"][d].sum(1, keepdims=True), ones, y["base"][d].sum(1, keepdims=True), ones,
                                resamples=400, seed=d)
        i = live.interaction_bootstrap(y["cand"][d].ravel(), y["base"][d].ravel(), resamples=400, seed=d)
        covered["user"] += u.ci_low <= true_diff <= u.ci_high
        covered["interaction"] += i.ci_low <= true_diff <= i.ci_high
    coverage = {k: v / datasets for k, v in covered.items()}
    print(f"true diff {true_diff:.4f}; 95% interval coverage over {datasets} datasets: "
          f"user bootstrap {coverage['user']:.3f}, interaction bootstrap {coverage['interaction']:.3f}")
    assert 0.90 <= coverage["user"] <= 0.99
    assert coverage["interaction"] < 0.85 and coverage["interaction"] < coverage["user"] - 0.1
