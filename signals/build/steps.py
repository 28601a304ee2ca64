"""The build's SQL steps (`signals/sql/build_*.sql`), run in order on one connection.

The recipe is bound as session variables (`getvariable('b_*')` in the SQL), values bound
with ? so no recipe value is ever pasted into SQL. A step's optional blocks, between
`-- NAME:begin` and `-- NAME:end` comments, are cut when the recipe makes them dead work
(no per-user cap, a hash split): DuckDB would otherwise compute columns of NULLs and
windows nobody reads. Every temp table of the build is named `build_*`, so that
`drop_temp_tables` removes them all and none can shadow a store table.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

STEPS = ("build_interactions", "build_outcomes", "build_examples", "build_select")
TEMP_PREFIX = "build_"


def sql(name: str) -> str:
    """The text of `signals/sql/{name}.sql`."""
    return resources.files("signals.sql").joinpath(f"{name}.sql").read_text()


def run(con: duckdb.DuckDBPyConnection, step: str) -> None:
    """Run one step, without the blocks this recipe does not need."""
    text = sql(step)
    if step in ("build_examples", "build_select") and not _variable(con, "getvariable('b_per_user') IS NOT NULL"):
        # no per-user cap: no columns of NULLs in every candidate, no window over every example
        text = without(text, "cap", "" if step == "build_examples" else "NULL::BIGINT")
    if step == "build_select" and _variable(con, "getvariable('b_split_method')") == "hash":
        # the split is a hash of the normalized prompt, so no prompt is in both splits
        text = without(text, "decontaminate", "NULL::VARCHAR")
    con.execute(text)


def without(text: str, block: str, instead: str) -> str:
    """`text` with its `-- block:begin` ... `-- block:end` replaced by `instead`."""
    head, rest = text.split(f"-- {block}:begin", 1)
    return head + instead + rest.split(f"-- {block}:end", 1)[1]


def _variable(con: duckdb.DuckDBPyConnection, expr: str):
    return con.execute(f"SELECT {expr}").fetchone()[0]


def bind(con: duckdb.DuckDBPyConnection, r: dict, *, pii_prefilter: str) -> None:
    """The normalized recipe `r` as session variables (`getvariable('b_*')` in the SQL)."""
    f, o, p, s, priv = r["filters"], r["outcome"], r["pref"], r["split"], r["privacy"]
    retention_days = priv["retention_days"]
    if retention_days is None:
        row = con.execute("SELECT value FROM settings WHERE key = 'retention_days'").fetchone()
        retention_days = float(row[0]) if row and row[0] not in (None, "") else None
    as_of = datetime.fromisoformat(priv["as_of"]) if priv["as_of"] else datetime.now(UTC)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    retention_cutoff = as_of - timedelta(days=retention_days) if retention_days is not None else None
    variables: list[tuple[str, str, Any]] = [
        ("b_sources", "VARCHAR[]", f["sources"]),
        ("b_apps", "VARCHAR[]", f["apps"]),
        ("b_tasks", "VARCHAR[]", f["tasks"]),
        ("b_models", "VARCHAR[]", f["models"]),
        ("b_users", "VARCHAR[]", f["users"]),
        ("b_exclude_users", "VARCHAR[]", f["exclude_users"]),
        ("b_since", "TIMESTAMPTZ", f["since"]),
        ("b_until", "TIMESTAMPTZ", f["until"]),
        ("b_min_prompt", "BIGINT", f["min_prompt_chars"]),
        ("b_max_prompt", "BIGINT", f["max_prompt_chars"]),
        ("b_min_completion", "BIGINT", f["min_completion_chars"]),
        ("b_max_completion", "BIGINT", f["max_completion_chars"]),
        ("b_retention_cutoff", "TIMESTAMPTZ", retention_cutoff),
        ("b_rate_accept", "DOUBLE", o["rate_accept_at"]),
        ("b_rate_reject", "DOUBLE", o["rate_reject_at"]),
        ("b_choose_outcome", "BOOLEAN", o["choose_as_outcome"]),
        ("b_accept_keeps_edit", "BOOLEAN", o["accept_keeps_edit"]),
        ("b_trivial_edit", "VARCHAR", o["trivial_edit"]),
        ("b_min_edit", "DOUBLE", p["min_edit_distance"]),
        ("b_sft", "BOOLEAN", r["sft"]["enabled"]),
        ("b_sft_accept", "BOOLEAN", r["sft"]["from_accept"]),
        ("b_sft_edit", "BOOLEAN", r["sft"]["from_edit"]),
        ("b_pref", "BOOLEAN", p["enabled"]),
        ("b_pref_edit", "BOOLEAN", p["from_edit"]),
        ("b_pref_choose", "BOOLEAN", p["from_choose"]),
        ("b_choose_same_prompt", "BOOLEAN", p["choose_same_prompt"]),
        ("b_from_regen", "BOOLEAN", p["from_regen"] and p["enabled"]),
        ("b_regen_within", "VARCHAR", p["regen_within"]),
        ("b_max_regen", "BIGINT", p["max_regen_pairs"]),
        ("b_kto", "BOOLEAN", r["kto"]["enabled"]),
        ("b_dedup", "BOOLEAN", r["caps"]["dedup"]),
        ("b_per_user", "BIGINT", r["caps"]["per_user"]),
        ("b_split_method", "VARCHAR", s["method"]),
        ("b_eval_fraction", "DOUBLE", s["eval_fraction"]),
        ("b_cutoff", "TIMESTAMPTZ", s["cutoff"]),
        ("b_seed", "VARCHAR", str(s["seed"])),
        ("b_decontaminate", "VARCHAR", s["decontaminate"]),
    ]
    for name, sql_type, value in variables:
        con.execute(f"SET VARIABLE {name} = CAST(? AS {sql_type})", [value])
    con.execute("SET VARIABLE b_seed_hash = md5_number_lower(CAST(? AS VARCHAR))", [str(s["seed"])])
    con.execute("SET VARIABLE b_has_bench = CAST(? AS BOOLEAN)", [bool(s["benchmark_prompts"])])
    con.execute("SET VARIABLE b_redact = CAST(? AS BOOLEAN)", [bool(priv["redact_pii"])])
    con.execute("SET VARIABLE b_pii_re = CAST(? AS VARCHAR)", [pii_prefilter])


def bind_newest_cutoff(con: duckdb.DuckDBPyConnection, eval_fraction: float, eval_count: int | None = None) -> None:
    """Time split without a cutoff: the newest `eval_count`, else `eval_fraction`, of kept
    interactions is eval."""
    if eval_count is None and eval_fraction <= 0:
        con.execute("SET VARIABLE b_cutoff = CAST('infinity' AS TIMESTAMPTZ)")
        return
    n = con.execute("SELECT count(*) FROM build_interactions WHERE excluded IS NULL").fetchone()[0]
    k = min(int(eval_count), n) if eval_count is not None else math.ceil(eval_fraction * n)
    if k == 0:
        con.execute("SET VARIABLE b_cutoff = CAST('infinity' AS TIMESTAMPTZ)")
        return
    con.execute("SET VARIABLE b_cutoff = (SELECT ts FROM build_interactions WHERE excluded IS NULL "
                "ORDER BY ts DESC LIMIT 1 OFFSET ?)", [k - 1])


def bind_eval_count(con: duckdb.DuckDBPyConnection, eval_count: int) -> None:
    """Hash, user or session split held out by count: the eval part is every split group whose
    bucket is at most the `eval_count`-th smallest bucket of the kept interactions (so at least
    `eval_count` interactions, whole groups), bound as the equivalent b_eval_fraction."""
    row = con.execute("SELECT split_bucket FROM build_interactions WHERE excluded IS NULL "
                      "ORDER BY split_bucket LIMIT 1 OFFSET ?", [int(eval_count) - 1]).fetchone()
    bucket = row[0] if row else 999_999               # fewer kept interactions than eval_count: all of them
    con.execute("SET VARIABLE b_eval_fraction = CAST(? AS DOUBLE)", [(int(bucket) + 1) / 1_000_000])


# The normalization of build_interactions.sql's last_user_key (build_normalize: build_macros.sql),
# applied to benchmark prompts.
_NORM_KEY = "md5_number_lower(build_normalize(lower(p)))"


def load_benchmark(con: duckdb.DuckDBPyConnection, path: str | None) -> None:
    """Benchmark prompts (one per line, or JSONL with "prompt") as normalized keys in
    build_benchmark_keys."""
    con.execute("CREATE OR REPLACE TEMP TABLE build_benchmark_keys (key UBIGINT)")
    if not path:
        return
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"split.benchmark_prompts: {file} does not exist")
    prompts: list[str] = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if file.suffix in (".jsonl", ".json"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{file}:{n}: invalid JSON ({e.msg})") from None
            prompt = rec.get("prompt") if isinstance(rec, dict) else rec
            if isinstance(prompt, list):   # chat messages: the last user message
                users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
                prompt = users[-1] if users else None
            if not isinstance(prompt, str):
                raise ValueError(f"{file}:{n}: field 'prompt' must be a string or chat messages")
            prompts.append(prompt)
        else:
            prompts.append(line)
    con.execute(f"INSERT INTO build_benchmark_keys SELECT DISTINCT {_NORM_KEY} "
                "FROM (SELECT unnest(?::VARCHAR[]) AS p)", [prompts])


def drop_temp_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Drop every temp table of the build, so that a caller's connection does not keep them."""
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary "
                               "AND starts_with(table_name, ?)", [TEMP_PREFIX]).fetchall():
        con.execute(f'DROP TABLE IF EXISTS temp."{name}"')
