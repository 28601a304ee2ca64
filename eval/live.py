"""Live metrics: what users did with each served model's answers, and two models compared.

    rows = daily_rates(con, models=["run-a", "run-b"], since="2026-01-01")
    c = compare(con, "run-b", "run-a", metric="accept_rate", since="2026-01-01")
    c.diff, c.ci_low, c.ci_high, c.pooled_diff, c.strata

The outcome of an interaction is its latest decisive feedback, by the rules of the
dataset build (signals/sql/build_outcomes.sql, the recipe's `outcome` and
`pref.min_edit_distance` defaults, `build_normalize` from signals/sql/build_macros.sql):
accept, reject, a non-trivial edit, a rating at/over 4 (accept) or at/under 2 (reject);
ties in time edit > reject > accept, then event_id; an accept after an edit keeps the
edit. A rate (accept_rate, edit_rate, reject_rate) has as denominator the interactions
that have an outcome; the other metrics their own (see `LIVE_METRICS_DENOMINATOR`).

`compare` stratifies by app/task (direct standardization: each stratum's difference
weighted by its share of both models' pooled traffic, over the strata both models
served) and takes its interval from a Poisson bootstrap over users, within each arm: a
user's interactions are correlated, so resampling interactions understates the
uncertainty (tests/eval/test_live.py shows it by simulation; docs/live.md has figures).
The heavy part is one DuckDB query that aggregates to per model x user x stratum sums;
the bootstrap runs in numpy over those small arrays.

Each interaction's outcome (and rating, edit change, choices, latency) is stored in
`live_outcomes` (signals/migrations/0008_live_outcomes.sql) under the default rules and
kept current by `refresh_outcomes` (incremental: only the interactions that newer ingests,
forget or retention touched). `compare` and `daily_rates` refresh it first on a writable
connection; on a read-only one they read it only while `staleness` finds nothing new, else
they compute on the fly from the raw feedback (`details["outcomes"]` says which).
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from importlib import resources

import numpy as np
import pandas as pd

from signals.recipe import Outcome, Pref

# name -> which direction is better
LIVE_METRICS: dict[str, str] = {
    "accept_rate": "higher",        # outcome accept / interactions with an outcome
    "edit_rate": "lower",           # outcome edit / interactions with an outcome
    "reject_rate": "lower",         # outcome reject / interactions with an outcome
    "edit_change": "lower",         # mean normalized edit distance, over edit outcomes
    "mean_rating": "higher",        # mean latest rating, over rated interactions
    "choice_win_rate": "higher",    # choices won / choices the model's answer was in
    "latency_ms": "lower",          # mean metadata.latency_ms (the gateway's capture)
}
LIVE_METRICS_DENOMINATOR: dict[str, str] = {
    "accept_rate": "interactions with an outcome",
    "edit_rate": "interactions with an outcome",
    "reject_rate": "interactions with an outcome",
    "edit_change": "interactions whose outcome is an edit",
    "mean_rating": "interactions with a rating",
    "choice_win_rate": "choose events the model's answer was in (either side)",
    "latency_ms": "interactions with metadata.latency_ms",
}
# SQL sums per metric: (numerator, denominator) over the per-interaction columns of _per_interaction
_SUMS = {
    "accept_rate": ("count(*) FILTER (WHERE outcome = 'accept')", "count(outcome)"),
    "edit_rate": ("count(*) FILTER (WHERE outcome = 'edit')", "count(outcome)"),
    "reject_rate": ("count(*) FILTER (WHERE outcome = 'reject')", "count(outcome)"),
    "edit_change": ("sum(edit_change)", "count(edit_change)"),
    "mean_rating": ("sum(rating)", "count(rating)"),
    "choice_win_rate": ("sum(wins)", "sum(wins + losses)"),
    "latency_ms": ("sum(latency_ms)", "count(latency_ms)"),
}
STRATA = ("app", "task")            # the columns a comparison may stratify by
BUCKETS = ("day", "hour")


def outcome_rules(**overrides) -> dict:
    """The build's outcome rules (signals.recipe defaults), with `overrides` by name."""
    rules = {**asdict(Outcome()), "min_edit_distance": Pref().min_edit_distance}
    unknown = set(overrides) - set(rules)
    if unknown:
        raise ValueError(f"unknown outcome rule(s) {sorted(unknown)}; known: {sorted(rules)}")
    return {**rules, **overrides}


# The outcome SQL: build_outcomes.sql's events/latest/last_edit logic, per interaction in the
# window, as one query (aggregates by interaction, no temp tables, so it runs on a read-only
# store and next to a build). Pieces are chosen by the metrics asked for; values are bound.
_WINDOW = """
i AS (
    SELECT interaction_id, model_id, coalesce(user_id, '#' || interaction_id) AS user_id, app, task, ts{latency}
    FROM interactions
    WHERE ts >= coalesce($since, '-infinity'::TIMESTAMPTZ) AND ts < coalesce($until, 'infinity'::TIMESTAMPTZ)
      AND ($models IS NULL OR list_contains($models, model_id)){touched}
)"""
# Decisions are numbers (1 accept, 2 reject, 3 edit: the tie order) and the latest one is
# max(epoch_us(ts) * 4 + decision) % 4: a numeric aggregate (arg_max over a struct key held
# wide states per interaction and took 5x longer at 5M). Equal (ts, decision) is the same
# decision, so build_outcomes.sql's last tie-break (event_id) cannot change an outcome.
# Edits alone join interactions (for the completion); their verdicts are build_outcomes.sql's.
_OUTCOME = """,
events AS (
    SELECT interaction_id, ts, event_id,
        CASE kind
            WHEN 'accept' THEN 1
            WHEN 'reject' THEN 2
            WHEN 'rate' THEN CASE WHEN score >= $rate_accept THEN 1 WHEN score <= $rate_reject THEN 2 END
            WHEN 'choose' THEN CASE WHEN $choose_outcome THEN 1 END
        END AS decision
    FROM fb WHERE kind <> 'edit'
    UNION ALL       -- every edit: empty (a reject), trivial (ignored, or an accept) or real
    SELECT interaction_id, ts, event_id,
        CASE WHEN e = '' THEN 2
             WHEN e = c THEN CASE WHEN $trivial_edit = 'accept' THEN 1 END
             WHEN abs(length(e) - length(c)) >= $min_edit * greatest(length(e), length(c)) THEN 3
             WHEN levenshtein(e, c) < $min_edit * greatest(length(e), length(c))
                 THEN CASE WHEN $trivial_edit = 'accept' THEN 1 END
             ELSE 3 END
    FROM (SELECT f.interaction_id, f.ts, f.event_id, build_normalize(f.edited_text) AS e,
                 build_normalize(x.completion) AS c
          FROM fb f JOIN interactions x USING (interaction_id)
          WHERE f.kind = 'edit' AND f.edited_text IS NOT NULL)
    UNION ALL       -- the candidate not chosen
    SELECT other_interaction_id, ts, event_id, 2
    FROM fb WHERE kind = 'choose' AND $choose_outcome AND other_interaction_id IS NOT NULL
),
outcome AS (        -- the latest decisive event: by time, then edit > reject > accept
    SELECT interaction_id,
        CASE (max(epoch_us(ts) * 4 + decision) % 4 + 4) % 4
            WHEN 1 THEN CASE WHEN $accept_keeps_edit AND bool_or(decision = 3) THEN 'edit' ELSE 'accept' END
            WHEN 2 THEN 'reject'
            WHEN 3 THEN 'edit' END AS outcome
    FROM events WHERE decision IS NOT NULL
    GROUP BY interaction_id
)"""
_EDIT_CHANGE = """,
last_edit AS (      -- the latest real edit (build_outcomes.sql's last_edit: by time, then event_id)
    SELECT interaction_id, arg_max(event_id, (ts, event_id)) AS event_id
    FROM events WHERE decision = 3
    GROUP BY interaction_id
),
edit_change AS (    -- an edit outcome's edit: normalized Levenshtein distance from the completion
    SELECT interaction_id, levenshtein(e, c) / greatest(length(e), length(c), 1)::DOUBLE AS edit_change
    FROM (SELECT o.interaction_id, build_normalize(f.edited_text) AS e, build_normalize(x.completion) AS c
          FROM outcome o JOIN last_edit l USING (interaction_id)
          JOIN feedback f ON f.event_id = l.event_id
          JOIN interactions x ON x.interaction_id = o.interaction_id
          WHERE o.outcome = 'edit')
)"""
_RATING = """,
rating AS (         -- the latest rating of each rated interaction
    SELECT interaction_id, arg_max(score, (ts, event_id)) AS rating
    FROM fb SEMI JOIN i USING (interaction_id)
    WHERE kind = 'rate' AND score IS NOT NULL
    GROUP BY interaction_id
)"""
_CHOICES = """,
choices AS (        -- each choose event: a win for the chosen answer, a loss for the other
    SELECT interaction_id, sum(won)::BIGINT AS wins, sum(1 - won)::BIGINT AS losses
    FROM (SELECT interaction_id, 1 AS won FROM fb
          WHERE kind = 'choose' AND other_interaction_id IS NOT NULL AND other_interaction_id <> interaction_id
          UNION ALL
          SELECT other_interaction_id, 0 FROM fb
          WHERE kind = 'choose' AND other_interaction_id IS NOT NULL AND other_interaction_id <> interaction_id)
    SEMI JOIN i USING (interaction_id)
    GROUP BY interaction_id
)"""
_NEEDS = {     # metric -> the CTEs it reads
    "accept_rate": ("outcome",), "edit_rate": ("outcome",), "reject_rate": ("outcome",),
    "edit_change": ("outcome", "edit_change"), "mean_rating": ("rating",),
    "choice_win_rate": ("choices",), "latency_ms": ("latency",),
}


def _macros(con) -> None:
    """build_normalize, the build's one text normalization (signals/sql/build_macros.sql)."""
    con.execute(resources.files("signals.sql").joinpath("build_macros.sql").read_text())


# The feedback read: all of it, or (a window holding a small part of the store) only the
# events about interactions in the window, which costs a semi-join but skips the rest.
_FEEDBACK = {False: """,
fb AS NOT MATERIALIZED (SELECT * FROM feedback)""", True: """,
fb AS MATERIALIZED (
    SELECT * FROM feedback
    WHERE interaction_id IN (SELECT interaction_id FROM i)
       OR (kind = 'choose' AND other_interaction_id IN (SELECT interaction_id FROM i))
)"""}


def narrow(con, params: dict) -> bool:
    """Whether the window holds under a third of the store's interactions (then feedback
    is filtered to it first; else aggregating all of it is cheaper than the semi-join)."""
    if params["since"] is None and params["until"] is None and params["models"] is None:
        return False
    sql = ("SELECT count(*) FILTER (WHERE ts >= coalesce($since, '-infinity'::TIMESTAMPTZ) "
           "AND ts < coalesce($until, 'infinity'::TIMESTAMPTZ) "
           "AND ($models IS NULL OR list_contains($models, model_id))) * 3 < count(*) FROM interactions")
    return bool(con.execute(sql, _bind(sql, params)).fetchone()[0])


def per_interaction_sql(metrics, narrow: bool = False, only_with: bool = False, touched: str | None = None) -> str:
    """A query with one row per interaction in the window: interaction_id, model_id, user_id
    (a missing user is its own: '#' || interaction_id), app, task, ts
    and the columns `metrics` read (outcome, edit_change, rating, wins, losses, latency_ms).
    `only_with`: only the interactions that have all of them (in the metrics' denominators).
    `touched`: a table of interaction_id; only those interactions (pass narrow=True with it)."""
    needs = {cte for m in metrics for cte in _NEEDS[m]}
    latency = ",\n        TRY_CAST(json_extract_string(metadata, '$.latency_ms') AS DOUBLE) AS latency_ms"
    touched_sql = f"\n      AND interaction_id IN (SELECT interaction_id FROM {touched})" if touched else ""
    ctes = (_WINDOW.format(latency=latency if "latency" in needs else "", touched=touched_sql)
            + _FEEDBACK[bool(narrow)])
    cols, joins = ["i.interaction_id", "i.model_id", "i.user_id", "i.app", "i.task", "i.ts"], []
    if "outcome" in needs:
        ctes += _OUTCOME
        cols.append("o.outcome")
        joins.append("LEFT JOIN outcome o USING (interaction_id)")
    if "edit_change" in needs:
        ctes += _EDIT_CHANGE
        cols.append("ec.edit_change")
        joins.append("LEFT JOIN edit_change ec USING (interaction_id)")
    if "rating" in needs:
        ctes += _RATING
        cols.append("r.rating")
        joins.append("LEFT JOIN rating r USING (interaction_id)")
    if "choices" in needs:
        ctes += _CHOICES
        cols += ["coalesce(ch.wins, 0) AS wins", "coalesce(ch.losses, 0) AS losses"]
        joins.append("LEFT JOIN choices ch USING (interaction_id)")
    if "latency" in needs:
        cols.append("i.latency_ms")
    where = ""
    if only_with:
        joins = [j.replace("LEFT JOIN", "JOIN") for j in joins]
        where = "\nWHERE i.latency_ms IS NOT NULL" if "latency" in needs else ""
    return f"WITH {ctes}\nSELECT {', '.join(cols)}\nFROM i {' '.join(joins)}{where}"


def _params(rules: dict, since, until, models) -> dict:
    return {"since": _ts(since), "until": _ts(until), "models": list(models) if models is not None else None,
            "min_edit": float(rules["min_edit_distance"]), "rate_accept": float(rules["rate_accept_at"]),
            "rate_reject": float(rules["rate_reject_at"]), "choose_outcome": bool(rules["choose_as_outcome"]),
            "trivial_edit": str(rules["trivial_edit"]), "accept_keeps_edit": bool(rules["accept_keeps_edit"])}


def _ts(value):
    """A window bound as an aware datetime: ISO-8601 text, a date or a datetime; naive is UTC."""
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bind(sql: str, params: dict) -> dict:
    """The named parameters `sql` uses (DuckDB refuses unused ones)."""
    return {k: v for k, v in params.items() if f"${k}" in sql}


# ---- the materialized outcomes (signals/migrations/0008_live_outcomes.sql) ---------------
# Deriving each interaction's outcome from the raw feedback groups every feedback event by
# interaction on every call (about 5 s of CPU at 5M interactions). `live_outcomes` keeps the
# result, one row per interaction under the default rules; `refresh_outcomes` recomputes only
# the interactions that rows of newer ingests (or forget/retention, via live_outcomes_dirty)
# touched. A read-only connection uses the table only while `staleness` finds nothing new.

OUTCOMES_VERSION = 1        # bump when the outcome SQL changes: stored rows are then rebuilt
OUTCOME_COLUMNS = ("interaction_id", "model_id", "user_id", "app", "task", "ts", "outcome", "edit_change",
                   "rating", "wins", "losses", "latency_ms")
_ONLY_WITH = {"outcome": "outcome IS NOT NULL", "edit_change": "edit_change IS NOT NULL",
              "rating": "rating IS NOT NULL", "choices": "wins + losses > 0", "latency": "latency_ms IS NOT NULL"}
_COLUMNS_OF = {"outcome": ["outcome"], "edit_change": ["edit_change"], "rating": ["rating"],
               "choices": ["wins", "losses"], "latency": ["latency_ms"]}
_PROBE = """SELECT greatest((SELECT coalesce(max(ingest_id), 0) FROM ingests),
        (SELECT coalesce(max(ingest_id), 0) FROM interactions), (SELECT coalesce(max(ingest_id), 0) FROM feedback)),
    (SELECT count(*) FILTER (WHERE ingest_id IS NULL) FROM interactions),
    (SELECT count(*) FILTER (WHERE ingest_id IS NULL) FROM feedback),
    (SELECT count(*) FROM interactions), (SELECT count(*) FROM live_outcomes),
    (SELECT count(*) FROM live_outcomes_dirty)"""
_STATE = ("SELECT rules, ingest_watermark, unlogged_interactions, unlogged_feedback FROM live_outcomes_state "
          "WHERE name = 'default'")


def _rules_key() -> str:
    return json.dumps({"version": OUTCOMES_VERSION, **outcome_rules()}, sort_keys=True)


def _writable(con) -> bool:
    row = con.execute("SELECT NOT readonly FROM duckdb_databases() WHERE database_name = current_database()"
                      ).fetchone()
    return bool(row and row[0])


def _has_table(con) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                            "AND table_name = 'live_outcomes_state'").fetchone()[0])


def staleness(con) -> str | None:
    """Why `live_outcomes` is not current with the store, or None when it is (a few cheap counts)."""
    if not _has_table(con):
        return "the store has no live_outcomes table (migration 0008 not applied)"
    state = con.execute(_STATE).fetchone()
    if state is None:
        return "live_outcomes was never refreshed"
    rules, watermark, unlogged_i, unlogged_f = state
    if rules != _rules_key():
        return "live_outcomes was computed under other outcome rules or an older version of them"
    top, now_i, now_f, n_int, n_rows, dirty = con.execute(_PROBE).fetchone()
    why = []
    if top > watermark:
        why.append(f"ingests {watermark + 1}..{top} came after the last refresh")
    if (now_i, now_f) != (unlogged_i, unlogged_f):
        why.append("rows without an ingest id were written or deleted since")
    if dirty:
        why.append(f"{dirty} interaction(s) changed by forget/retention")
    if n_int != n_rows:
        why.append(f"{n_int} interactions, {n_rows} rows")
    return "; ".join(why) or None


def refresh_outcomes(con, *, full: bool = False) -> dict:
    """Bring `live_outcomes` up to date on a writable connection, in one transaction.

    Incremental: recomputes the interactions touched since the watermark (an interaction of a
    newer ingest, the interaction a newer feedback event is about or names as the other
    choice, or listed in live_outcomes_dirty) from all their feedback. A full rebuild when
    `full`, on the first refresh, when the rules changed, when rows without an ingest id
    were written or deleted (they carry no watermark), or when the table does not end with
    one row per interaction. Returns {"mode": "incremental" | "full" | "current", "reason",
    "touched", "removed", "recomputed", "rows", "ingest_watermark", "seconds"}."""
    from signals.store import transaction

    t0 = time.perf_counter()
    _macros(con)
    params = _params(outcome_rules(), None, None, None)
    cols = ", ".join(OUTCOME_COLUMNS)
    out = {"mode": "incremental", "reason": None, "touched": 0, "removed": 0, "recomputed": 0}
    with transaction(con):
        state = con.execute(_STATE).fetchone()
        top, now_i, now_f, *_ = con.execute(_PROBE).fetchone()
        if full:
            out["reason"] = "asked for"
        elif state is None:
            out["reason"] = "first refresh"
        elif state[0] != _rules_key():
            out["reason"] = "the outcome rules or their version changed"
        elif (now_i, now_f) != (state[2], state[3]):
            out["reason"] = "rows without an ingest id were written or deleted"
        if out["reason"] is None:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE live_touched AS SELECT DISTINCT interaction_id FROM ("
                "SELECT interaction_id FROM interactions WHERE ingest_id > $w "
                "UNION ALL SELECT interaction_id FROM feedback WHERE ingest_id > $w "
                "UNION ALL SELECT other_interaction_id FROM feedback WHERE ingest_id > $w "
                "AND other_interaction_id IS NOT NULL "
                "UNION ALL SELECT interaction_id FROM live_outcomes_dirty)", {"w": int(state[1])})
            out["touched"] = con.execute("SELECT count(*) FROM live_touched").fetchone()[0]
            if out["touched"]:
                out["removed"] = con.execute("DELETE FROM live_outcomes WHERE interaction_id IN "
                                             "(SELECT interaction_id FROM live_touched)").fetchone()[0]
                sql = (f"INSERT INTO live_outcomes ({cols}) SELECT {cols} FROM "
                       f"({per_interaction_sql(LIVE_METRICS, True, touched='live_touched')})")
                out["recomputed"] = con.execute(sql, _bind(sql, params)).fetchone()[0]
            else:
                out["mode"] = "current"
            con.execute("DROP TABLE live_touched")
            rows, n_int = con.execute("SELECT (SELECT count(*) FROM live_outcomes), "
                                      "(SELECT count(*) FROM interactions)").fetchone()
            if rows != n_int:
                out["reason"] = f"{rows} rows for {n_int} interactions after the incremental refresh"
        if out["reason"] is not None:
            out["mode"] = "full"
            out["removed"] = con.execute("DELETE FROM live_outcomes").fetchone()[0]
            sql = f"INSERT INTO live_outcomes ({cols}) SELECT {cols} FROM ({per_interaction_sql(LIVE_METRICS)})"
            out["recomputed"] = con.execute(sql, _bind(sql, params)).fetchone()[0]
            out["touched"] = out["recomputed"]
        con.execute("DELETE FROM live_outcomes_dirty")
        con.execute("INSERT OR REPLACE INTO live_outcomes_state VALUES ('default', ?, ?, ?, ?, now())",
                    [_rules_key(), int(top), int(now_i), int(now_f)])
        out["rows"] = con.execute("SELECT count(*) FROM live_outcomes").fetchone()[0]
    out["ingest_watermark"] = int(top)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def outcomes_source(con, rules: dict | None = None, source: str = "auto") -> dict:
    """Where the per-interaction rows come from: {"table": bool, "why": str, "refresh": dict | None}.

    `source="auto"`: the table under the default rules, refreshed first on a writable
    connection; on a read-only one only while `staleness` finds nothing new, else (stale
    data never used silently) the on-the-fly query, with the reason. `"query"`: always on
    the fly. Non-default `rules` are always computed on the fly."""
    if source not in ("auto", "query"):
        raise ValueError(f"source must be 'auto' or 'query', not {source!r}")
    if source == "query":
        return {"table": False, "why": "asked for the on-the-fly query", "refresh": None}
    if outcome_rules(**(rules or {})) != outcome_rules():
        return {"table": False, "why": "non-default outcome rules: computed on the fly", "refresh": None}
    if not _has_table(con):
        return {"table": False, "why": staleness(con), "refresh": None}
    if _writable(con):
        return {"table": True, "why": "live_outcomes, refreshed", "refresh": refresh_outcomes(con)}
    why = staleness(con)
    if why is None:
        return {"table": True, "why": "live_outcomes, current (read-only connection)", "refresh": None}
    return {"table": False, "why": f"live_outcomes is stale ({why}) and the connection is read-only: "
                                   "computed on the fly", "refresh": None}


def table_sql(metrics, only_with: bool = False) -> str:
    """per_interaction_sql's rows read from `live_outcomes` (same columns, same window parameters)."""
    needs = [cte for cte in ("outcome", "edit_change", "rating", "choices", "latency")
             if any(cte in _NEEDS[m] for m in metrics)]
    cols = ["interaction_id", "model_id", "user_id", "app", "task", "ts"] + [c for n in needs for c in _COLUMNS_OF[n]]
    where = ["ts >= coalesce($since, '-infinity'::TIMESTAMPTZ)", "ts < coalesce($until, 'infinity'::TIMESTAMPTZ)",
             "($models IS NULL OR list_contains($models, model_id))"]
    if only_with:
        where += [_ONLY_WITH[n] for n in needs]
    return f"SELECT {', '.join(cols)} FROM live_outcomes WHERE {' AND '.join(where)}"


def daily_rates(con, *, models=None, since=None, until=None, bucket: str = "day",
                rules: dict | None = None, source: str = "auto") -> list[dict]:
    """Per model_id, app, task and day (UTC; or hour): n interactions, n_outcome (those with
    an outcome), users, every metric of LIVE_METRICS and each metric's denominator count as
    `{metric}_n`. A metric without data in a row is NaN. The window is on interaction time,
    since inclusive, until exclusive; feedback counts whenever it arrived. `source`: see
    `outcomes_source` (the materialized outcomes when current, else on the fly)."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {BUCKETS}, not {bucket!r}")
    src = outcomes_source(con, rules, source)
    rules = outcome_rules(**(rules or {}))
    _macros(con)
    params = _params(rules, since, until, models)
    inner = table_sql(LIVE_METRICS) if src["table"] else per_interaction_sql(LIVE_METRICS, narrow(con, params))
    sums = ",\n    ".join(f"{num} AS \"{m}_num\", {den} AS \"{m}_n\"" for m, (num, den) in _SUMS.items())
    sql = (f"SELECT model_id, app, task, date_trunc('{bucket}', ts AT TIME ZONE 'UTC') AS {bucket},\n"
           f"    count(*) AS n, count(outcome) AS n_outcome, count(DISTINCT user_id) AS users,\n    {sums}\n"
           f"FROM ({inner})\nGROUP BY ALL ORDER BY model_id, app, task, {bucket}")
    cur = con.execute(sql, _bind(sql, params))
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        r = dict(zip(names, row, strict=True))
        for m in LIVE_METRICS:
            num, den = r.pop(f"{m}_num"), r[f"{m}_n"]
            r[m] = float(num) / den if den else math.nan
        out.append(r)
    return out


# ---- the bootstrap ---------------------------------------------------------------------

# Poisson(1) weights from 16 random bits: the inverse CDF on a 2^16 grid (P(w >= 9) ~ 1e-6 is cut)
_POISSON = np.searchsorted(np.cumsum([math.exp(-1) / math.factorial(k) for k in range(12)]) * 65536,
                           np.arange(65536) + 0.5, side="right").astype(np.float32)
_CHUNK = 16             # resamples per weight matrix: small, so it stays in cache (bench/bench_live.py)


@dataclass
class BootstrapResult:
    diff: float                 # sum_s w_s (candidate_s - baseline_s) on the data
    ci_low: float
    ci_high: float
    se: float                   # standard deviation of the resampled differences
    resamples: int              # resamples with a finite difference
    candidate: float            # sum_s w_s candidate_s
    baseline: float
    weights: list = field(default_factory=list)


def _resampled_sums(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, cols): Poisson(1)-weighted column sums of x (rows, cols), one weight per row."""
    out = np.empty((resamples, x.shape[1]), dtype=np.float64)
    xt = np.ascontiguousarray(x.T, dtype=np.float32)
    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        w = _POISSON[rng.integers(0, 65536, size=(b, x.shape[0]), dtype=np.uint16)]
        for i in range(b):      # one matrix-vector product a resample: a threaded BLAS gemm stalls on busy cores
            out[start + i] = xt @ w[i]
    return out


def _both_arms(xc: np.ndarray, xb: np.ndarray, resamples: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """Both arms' resampled sums, the resamples in two halves with a random stream each (seeded,
    so the result is the same however they run): on two threads when the work is large (numpy
    releases the GIL in the draws and products), else one after the other."""
    half = [resamples - resamples // 2, resamples // 2]
    streams = np.random.default_rng(seed).spawn(2)

    def part(k: int) -> tuple[np.ndarray, np.ndarray]:
        return _resampled_sums(xc, half[k], streams[k]), _resampled_sums(xb, half[k], streams[k])

    if resamples * (len(xc) + len(xb)) >= 4_000_000:
        with ThreadPoolExecutor(2) as pool:
            parts = list(pool.map(part, (0, 1)))
    else:
        parts = [part(0), part(1)]
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])


def _standardized(cand_num, cand_den, base_num, base_den, weights, resamples, level, seed) -> BootstrapResult:
    cand_num, cand_den, base_num, base_den = (np.asarray(a, dtype=np.float64).reshape(len(a), -1)
                                              for a in (cand_num, cand_den, base_num, base_den))
    cn, cd, bn, bd = cand_num.sum(0), cand_den.sum(0), base_num.sum(0), base_den.sum(0)
    s = cn.shape[0]
    w = np.full(s, 1.0 / s) if weights is None else np.asarray(weights, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cand, base = float(w @ (cn / cd)), float(w @ (bn / bd))
    nan = BootstrapResult(math.nan, math.nan, math.nan, math.nan, 0, cand, base, w.tolist())
    if not (math.isfinite(cand) and math.isfinite(base)):
        return nan
    # a row (user) with nothing in any stratum changes no sum: with Poisson weights, dropping it is exact
    keep_c, keep_b = cand_den.any(1), base_den.any(1)
    xc = np.hstack([cand_num[keep_c], cand_den[keep_c]])
    xb = np.hstack([base_num[keep_b], base_den[keep_b]])
    c, b = _both_arms(xc, xb, resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = (c[:, :s] / c[:, s:]) @ w - (b[:, :s] / b[:, s:]) @ w
    boots = boots[np.isfinite(boots)]
    if boots.size < 2:
        return BootstrapResult(cand - base, math.nan, math.nan, math.nan, int(boots.size), cand, base, w.tolist())
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return BootstrapResult(cand - base, float(lo), float(hi), float(boots.std(ddof=1)), int(boots.size),
                           cand, base, w.tolist())


def user_bootstrap(cand_num, cand_den, base_num, base_den, weights=None, *, resamples: int = 1000,
                   level: float = 0.95, seed: int = 0) -> BootstrapResult:
    """Interval for a standardized difference of ratios, resampling USERS within each arm.

    `*_num`, `*_den`: (users, strata) arrays, a user's sums per stratum (a 1-D array is one
    stratum); the value of a stratum is sum(num) / sum(den); the difference is
    sum_s weights_s (candidate_s - baseline_s) (weights default to equal). Each user gets a
    Poisson(1) weight per resample (all of its interactions move together), independently
    in the two arms; the interval is the percentile interval of the resampled differences.

    >>> r = user_bootstrap([[3], [1]], [[4], [2]], [[1], [1]], [[4], [2]], resamples=200)
    >>> round(r.diff, 3)
    0.333
    """
    return _standardized(cand_num, cand_den, base_num, base_den, weights, resamples, level, seed)


def interaction_bootstrap(cand_values, base_values, *, cand_strata=None, base_strata=None, n_strata=None,
                          weights=None, resamples: int = 1000, level: float = 0.95, seed: int = 0
                          ) -> BootstrapResult:
    """The same difference, resampling INTERACTIONS as if independent (what a user-level
    bootstrap corrects; kept for the coverage test and for comparison).

    `*_values`: one value per interaction (NaN: not in the metric's denominator, e.g. no
    outcome); `*_strata`: its stratum index (default all 0)."""
    def rows(values, strata):
        v = np.asarray(values, dtype=np.float64)
        st = np.zeros(len(v), dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
        k = n_strata or int(max(st.max(initial=0) + 1, 1))
        has = np.isfinite(v)
        num, den = np.zeros((len(v), k)), np.zeros((len(v), k))
        num[np.arange(len(v)), st] = np.where(has, v, 0.0)
        den[np.arange(len(v)), st] = has
        return num, den

    if n_strata is None:
        n_strata = 1 + max(int(np.max(s, initial=0)) for s in (cand_strata, base_strata) if s is not None) \
            if cand_strata is not None or base_strata is not None else 1
    cn, cd = rows(cand_values, cand_strata)
    bn, bd = rows(base_values, base_strata)
    return _standardized(cn, cd, bn, bd, weights, resamples, level, seed)


# ---- comparing two models --------------------------------------------------------------

@dataclass
class LiveComparison:
    metric: str
    candidate: str              # model id
    baseline: str
    candidate_value: float      # sum_s w_s candidate_s (standardized to the pooled mix)
    baseline_value: float
    diff: float                 # candidate - baseline, stratified
    ci_low: float
    ci_high: float
    level: float
    n_candidate: int            # interactions in the metric's denominator, strata both served
    n_baseline: int
    users_candidate: int
    users_baseline: int
    pooled_diff: float          # the naive unstratified difference, every stratum
    strata: list[dict] = field(default_factory=list)
    method: str = ""
    since: object = None
    until: object = None
    higher_is_better: bool = True
    pooled_candidate: float = math.nan
    pooled_baseline: float = math.nan
    se: float = math.nan
    resamples: int = 0
    reason: str | None = None   # why a value is NaN, when one is
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("since", "until"):
            d[k] = d[k].isoformat() if isinstance(d[k], datetime) else d[k]
        return d


def user_sums(con, models, metric: str, *, since=None, until=None, strata=STRATA,
              rules: dict | None = None, source: str = "auto", src: dict | None = None) -> dict:
    """Per model x user x stratum sums of `metric`: {model: {"users": [...], "strata": [...],
    "num": (U, S), "den": (U, S), "n": interactions}} (strata keys are tuples). Only the
    interactions in the metric's denominator are grouped (the others add nothing to a
    sum); `n` counts every interaction of the model in the window. `source`: see
    `outcomes_source` (`src`: its answer, when the caller already has it)."""
    if metric not in _SUMS:
        raise ValueError(f"unknown live metric {metric!r}; known: {sorted(LIVE_METRICS)}")
    src = src or outcomes_source(con, rules, source)
    rules = outcome_rules(**(rules or {}))
    _macros(con)
    num, den = _SUMS[metric]
    keys = ", ".join(strata)
    params = _params(rules, since, until, models)
    inner = (table_sql([metric], only_with=True) if src["table"]
             else per_interaction_sql([metric], narrow(con, params), only_with=True))
    sql = (f"SELECT model_id, user_id, {keys + ',' if keys else ''} {num} AS num, {den} AS den\n"
           f"FROM ({inner})\nGROUP BY ALL")
    got = con.execute(sql, _bind(sql, params)).fetchnumpy()
    count = (f"SELECT model_id, count(*) FROM {'live_outcomes' if src['table'] else 'interactions'} "
             "WHERE ts >= coalesce($since, '-infinity'::TIMESTAMPTZ) AND ts < coalesce($until, 'infinity'::TIMESTAMPTZ) "
             "AND list_contains($models, model_id) GROUP BY model_id")
    n_of = dict(con.execute(count, _bind(count, params)).fetchall())
    out = {}
    model_col = np.asarray(got["model_id"], dtype=object)
    for m in models:
        sel = model_col == m
        u_idx, users = pd.factorize(np.asarray(got["user_id"], dtype=object)[sel])   # hashing, not sorting rows
        users = np.asarray(users, dtype=object).astype(str)
        order = np.argsort(users, kind="stable")          # users sorted: the resample does not hang on row order
        users, u_idx = users[order], np.argsort(order)[u_idx]
        cols = [np.asarray(got[k], dtype=object)[sel] for k in strata]
        combined = np.zeros(int(sel.sum()), dtype=np.int64)
        for col in cols:                      # a stratum's code: its columns' codes, mixed radix
            codes, uniques = pd.factorize(col, use_na_sentinel=False)
            combined = combined * max(len(uniques), 1) + codes
        _, first, s_idx = np.unique(combined, return_index=True, return_inverse=True)
        found = [tuple(col[i] for col in cols) for i in first]     # each stratum's values, from its first row
        stratum_list = sorted(found, key=lambda t: tuple("" if x is None else str(x) for x in t))
        rank = {t: j for j, t in enumerate(stratum_list)}
        s_idx = np.array([rank[t] for t in found], dtype=np.int64)[s_idx]
        n_arr, d_arr = np.zeros((len(users), len(stratum_list))), np.zeros((len(users), len(stratum_list)))
        n_arr[u_idx, s_idx] = np.asarray(got["num"], dtype=np.float64)[sel]     # GROUP BY: one row per cell
        d_arr[u_idx, s_idx] = np.asarray(got["den"], dtype=np.float64)[sel]
        out[m] = {"users": users, "strata": stratum_list, "num": n_arr, "den": d_arr, "n": int(n_of.get(m, 0))}
    return out


def compare(con, candidate: str, baseline: str, *, metric: str = "accept_rate", since=None, until=None,
            strata=STRATA, resamples: int = 1000, level: float = 0.95, seed: int = 0,
            rules: dict | None = None, source: str = "auto") -> LiveComparison:
    """`candidate` against `baseline` on `metric`, same window, stratified by `strata`.

    diff = sum_s w_s (candidate_s - baseline_s) over the strata both models served (with
    data for the metric), w_s = the stratum's share of both models' pooled denominator
    there (direct standardization: a shift in traffic mix cannot fake a win); strata only
    one model served are listed with weight 0 and left out. Interval: Poisson bootstrap
    over users within each arm (`user_bootstrap`). A side without data gives NaN values
    and a `reason`. `source`: where the per-interaction outcomes come from (`outcomes_source`:
    the materialized table, refreshed first on a writable connection; on a read-only one only
    while current, else on the fly); `details["outcomes"]` says which, and why."""
    if metric not in LIVE_METRICS:
        raise ValueError(f"unknown live metric {metric!r}; known: {sorted(LIVE_METRICS)}")
    bad = [s for s in strata if s not in STRATA]
    if bad:
        raise ValueError(f"strata must be among {STRATA}, not {bad}")
    strata = tuple(strata)
    src = outcomes_source(con, rules, source)
    sums = user_sums(con, [candidate, baseline], metric, since=since, until=until, strata=strata, rules=rules,
                     src=src)
    c, b = sums[candidate], sums[baseline]
    method = (f"{metric}: ratio of sums per stratum ({', '.join(strata) or 'no strata'}), direct standardization "
              f"to both models' pooled {LIVE_METRICS_DENOMINATOR[metric]}; {int(level * 100)}% percentile "
              f"interval, Poisson bootstrap over users within each arm, {resamples} resamples, seed {seed}")
    result = LiveComparison(metric=metric, candidate=candidate, baseline=baseline, candidate_value=math.nan,
                            baseline_value=math.nan, diff=math.nan, ci_low=math.nan, ci_high=math.nan, level=level,
                            n_candidate=0, n_baseline=0, users_candidate=0, users_baseline=0, pooled_diff=math.nan,
                            method=method, since=_ts(since), until=_ts(until),
                            higher_is_better=LIVE_METRICS[metric] == "higher")
    cd_tot, bd_tot = c["den"].sum(), b["den"].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        result.pooled_candidate = float(c["num"].sum() / cd_tot) if cd_tot else math.nan
        result.pooled_baseline = float(b["num"].sum() / bd_tot) if bd_tot else math.nan
    result.pooled_diff = result.pooled_candidate - result.pooled_baseline
    c_den, b_den = dict(zip(c["strata"], c["den"].sum(0), strict=True)), dict(zip(b["strata"], b["den"].sum(0),
                                                                                  strict=True))
    c_num, b_num = dict(zip(c["strata"], c["num"].sum(0), strict=True)), dict(zip(b["strata"], b["num"].sum(0),
                                                                                  strict=True))
    both = [s for s in c["strata"] if c_den.get(s, 0) > 0 and b_den.get(s, 0) > 0]
    total = sum(c_den[s] + b_den[s] for s in both)
    for s in sorted(set(c["strata"]) | set(b["strata"]), key=lambda t: tuple("" if x is None else str(x) for x in t)):
        cn, bn = float(c_den.get(s, 0)), float(b_den.get(s, 0))
        cv = c_num[s] / cn if cn else math.nan
        bv = b_num[s] / bn if bn else math.nan
        result.strata.append({**dict(zip(strata, s, strict=True)), "n_candidate": int(cn), "n_baseline": int(bn),
                              "candidate": float(cv), "baseline": float(bv), "diff": float(cv - bv),
                              "weight": float((cn + bn) / total) if s in both else 0.0})
    dropped = [{k: v for k, v in st.items() if k in strata} for st in result.strata if not st["weight"]]
    result.details = {"strata_used": len(both), "strata_dropped": dropped,
                      "note": "only strata both models served (with data for the metric) count; the weights "
                              "are each one's share of both models' pooled denominator there",
                      "interactions_candidate": c["n"], "interactions_baseline": b["n"],
                      "outcomes": {"source": "live_outcomes" if src["table"] else "on the fly", "why": src["why"],
                                   "refresh": src["refresh"]}}
    if not both:
        missing = [m for m, side in ((candidate, c), (baseline, b)) if not side["den"].sum()]
        result.reason = (f"no {LIVE_METRICS_DENOMINATOR[metric]} for {', '.join(missing)} in the window"
                         if missing else "the two models share no stratum with data for the metric")
        return result
    ci = [c["strata"].index(s) for s in both]
    bi = [b["strata"].index(s) for s in both]
    weights = np.array([(c_den[s] + b_den[s]) / total for s in both])
    r = user_bootstrap(c["num"][:, ci], c["den"][:, ci], b["num"][:, bi], b["den"][:, bi], weights,
                       resamples=resamples, level=level, seed=seed)
    result.candidate_value, result.baseline_value, result.diff = r.candidate, r.baseline, r.diff
    result.ci_low, result.ci_high, result.se, result.resamples = r.ci_low, r.ci_high, r.se, r.resamples
    result.n_candidate = int(sum(c_den[s] for s in both))
    result.n_baseline = int(sum(b_den[s] for s in both))
    result.users_candidate = int(c["den"][:, ci].any(1).sum())
    result.users_baseline = int(b["den"][:, bi].any(1).sum())
    if not math.isfinite(result.ci_low):
        result.reason = f"too few users to resample ({result.users_candidate} and {result.users_baseline})"
    return result
