"""Build versioned SFT, preference and KTO snapshots from the signal store.

    snap = build_snapshot(recipe, "data/signal.duckdb", root="data/snapshots")
    snap.version, snap.path, snap.manifest["counts"]

The rules live in SQL (`signals/sql/build_*.sql`, run in order on one connection,
the recipe bound as session variables) so that the heavy work is DuckDB's:

1. `build_interactions`: parse prompts once; exclude by privacy (forgotten, opted
   out, retention), filters and lengths, each with its reason; hash the normalized
   prompt; give each interaction a split bucket.
2. `build_outcomes`: the latest decisive feedback per interaction.
3. `build_examples`: SFT, preference (edit, choose, regen) and KTO candidates.
4. `build_select`: split, de-duplicate, cap per user, drop benchmark prompts from
   train, decontaminate (no normalized prompt in both splits).

Then PII is redacted (signals.pii) in the texts that are exported (only interactions
that build_interactions flagged as possibly holding PII are read again), and the six
Parquet files are written in chunks of consecutive rows of the store (`build_export`,
`build_chunk`: each chunk's texts are read and parsed once, and each kind's narrow,
sorted rows take their texts from them in Arrow), so memory stays bounded as the store
grows. The version is a hash of their bytes, the recipe and
BUILDER_VERSION: the same store and recipe give the same files and version, and an
identical existing snapshot is reused. The store records each snapshot and the
interactions it holds (`snapshots`, `snapshot_members`, migration 0002), so that
`revoke_snapshots` can withdraw every snapshot with a forgotten user's data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from signals import store as store_mod
from signals.manifest import read_manifest
from signals.recipe import normalize

BUILDER_VERSION = "signals.build/3"
KINDS = ("sft", "pref", "kto")
SPLITS = ("train", "eval")
STEPS = ("build_interactions", "build_outcomes", "build_examples", "build_select")
# DuckDB spills to disk beyond this, so a build's memory stays bounded as the store grows
# (with Arrow's chunks beside it, the peak RSS at 5M events is ~1.6 GiB: bench/bench_build.py).
MEMORY_LIMIT = os.environ.get("SIGNALS_BUILD_MEMORY", "1GB")
REVOKED_MARKER = "REVOKED.json"

_MSG = "STRUCT(role VARCHAR, content VARCHAR)"
ROW_GROUP = 25_000      # rows per Parquet row group (fixed, so files are byte-for-byte reproducible)


def _schemas():
    import pyarrow as pa

    msgs = pa.list_(pa.field("element", pa.struct([("role", pa.string()), ("content", pa.string())])))
    extras = [("interaction_id", pa.string()), ("app", pa.string()), ("task", pa.string()),
              ("user_id", pa.string()), ("origin", pa.string())]
    return {
        "sft": pa.schema([("messages", msgs), *extras]),
        "pref": pa.schema([("prompt", msgs), ("chosen", msgs), ("rejected", msgs), *extras]),
        "kto": pa.schema([("prompt", msgs), ("completion", msgs), ("label", pa.bool_()), *extras]),
    }


class SnapshotRevoked(RuntimeError):
    """The snapshot was revoked (e.g. it held a forgotten user's data): never train on it."""


@dataclass
class Snapshot:
    """A built snapshot: `path/manifest.json` and `path/{kind}/{split}.parquet`."""

    version: str
    path: Path
    manifest: dict

    def file(self, kind: str, split: str) -> Path:
        return self.path / kind / f"{split}.parquet"

    def data_files(self, kind: str) -> dict[str, str]:
        """`datasets.load_dataset("parquet", data_files=snap.data_files("pref"))`."""
        return {split: str(self.file(kind, split)) for split in SPLITS}


# ----------------------------------------------------------------------------- build


def build_snapshot(recipe: dict, store: str | os.PathLike | duckdb.DuckDBPyConnection,
                   root: str | os.PathLike = "data/snapshots", *, progress: bool | None = None) -> Snapshot:
    """Build (or reuse the identical existing) snapshot of `recipe` from `store`."""
    r = normalize(recipe)
    if not isinstance(store, duckdb.DuckDBPyConnection) and not Path(store).exists():
        raise FileNotFoundError(f"signal store {store} does not exist: ingest first "
                                "(python -m signals ingest PATH), or pass store=/--db")
    con = store if isinstance(store, duckdb.DuckDBPyConnection) else store_mod.open_store(store)
    try:
        return _build(con, r, Path(root), _progress(progress))
    finally:
        _drop_temp_tables(con)
        if con is not store:
            con.close()


def _build(con: duckdb.DuckDBPyConnection, r: dict, root: Path, bar) -> Snapshot:
    con.execute(f"SET memory_limit = '{_mib(MEMORY_LIMIT)}MiB'")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")   # files are sorted explicitly
    if os.environ.get("SIGNALS_BUILD_THREADS"):
        con.execute(f"SET threads = {int(os.environ['SIGNALS_BUILD_THREADS'])}")
    _bind(con, r)
    con.execute(_sql("build_macros"))
    bar.set_description("build: interactions")
    _run(con, "build_interactions")
    _load_benchmark(con, r["split"]["benchmark_prompts"])
    bar.update()
    if r["split"]["method"] == "time" and r["split"]["cutoff"] is None:
        _bind_newest_cutoff(con, r["split"]["eval_fraction"])
    for step in STEPS[1:]:
        bar.set_description(f"build: {step.removeprefix('build_')}")
        _run(con, step)
        bar.update()

    con.execute(_USED)
    bar.set_description("build: redact PII")
    con.execute("CREATE OR REPLACE TEMP TABLE b_red (t VARCHAR, r VARCHAR)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE b_pii (rid BIGINT, prompt {_MSG}[], completion VARCHAR)")
    redactions = _redact(con) if r["privacy"]["redact_pii"] else {}
    bar.update()

    # what the manifest needs, before the export drops the tables it came from
    summary = _summary(con)
    bar.set_description("build: write")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        files = _export(con, tmp)
        manifest = {
            "version": _version(r, files),
            "recipe": r,
            "counts": summary["counts"],
            "exclusions": summary["exclusions"],
            "watermark": _watermark(con),
            "builder_version": BUILDER_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "redactions": redactions,
            "kto_classes": summary["kto_classes"],
            "kto_weights": kto_weights(summary["kto_classes"]["train"], r["kto"]),
            "files": files,
        }
        snap = _publish(con, root, tmp, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bar.update()
    bar.close()
    return snap


def _mib(size: str) -> int:
    """'1.5GB', '512MiB', ... in MiB (DuckDB's units: KB/MB/GB/TB are powers of 1000)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT])(i?)B", size.strip(), re.IGNORECASE)
    if not m:
        raise ValueError(f"SIGNALS_BUILD_MEMORY={size!r}: expected a size like 1.5GB or 512MiB")
    power = "KMGT".index(m[2].upper()) + 1
    return max(1, int(float(m[1]) * (1024 if m[3] else 1000) ** power / 2**20))


def _progress(enabled: bool | None):
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=len(STEPS) + 2, disable=not enabled, unit="step")


def _sql(name: str) -> str:
    return resources.files("signals.sql").joinpath(f"{name}.sql").read_text()


def _run(con: duckdb.DuckDBPyConnection, step: str) -> None:
    sql = _sql(step)
    if step in ("build_examples", "build_select") and not _variable(con, "getvariable('b_per_user') IS NOT NULL"):
        # no per-user cap: no columns of NULLs in every candidate, no window over every example
        sql = _without(sql, "cap", "" if step == "build_examples" else "NULL::BIGINT")
    if step == "build_select" and _variable(con, "getvariable('b_split_method')") == "hash":
        # the split is a hash of the normalized prompt, so no prompt is in both splits
        sql = _without(sql, "decontaminate", "NULL::VARCHAR")
    con.execute(sql)


def _variable(con: duckdb.DuckDBPyConnection, expr: str):
    return con.execute(f"SELECT {expr}").fetchone()[0]


def _without(sql: str, block: str, instead: str) -> str:
    """`sql` with its `-- block:begin` ... `-- block:end` replaced by `instead`."""
    head, rest = sql.split(f"-- {block}:begin", 1)
    return head + instead + rest.split(f"-- {block}:end", 1)[1]


def _bind(con: duckdb.DuckDBPyConnection, r: dict) -> None:
    """The recipe as session variables (`getvariable('b_*')` in the SQL), values bound with ?."""
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
    con.execute("SET VARIABLE b_pii_re = CAST(? AS VARCHAR)", [PII_PREFILTER])


def _bind_newest_cutoff(con: duckdb.DuckDBPyConnection, eval_fraction: float) -> None:
    """Time split without a cutoff: the newest `eval_fraction` of kept interactions is eval."""
    if eval_fraction <= 0:
        con.execute("SET VARIABLE b_cutoff = CAST('infinity' AS TIMESTAMPTZ)")
        return
    n = con.execute("SELECT count(*) FROM b_int WHERE excluded IS NULL").fetchone()[0]
    k = math.ceil(eval_fraction * n)
    if k == 0:
        con.execute("SET VARIABLE b_cutoff = CAST('infinity' AS TIMESTAMPTZ)")
        return
    con.execute("SET VARIABLE b_cutoff = (SELECT ts FROM b_int WHERE excluded IS NULL "
                "ORDER BY ts DESC LIMIT 1 OFFSET ?)", [k - 1])


# The normalization of build_interactions.sql's last_user_key (b_norm: build_macros.sql),
# applied to benchmark prompts.
_NORM_KEY = "md5_number_lower(b_norm(lower(p)))"


def _load_benchmark(con: duckdb.DuckDBPyConnection, path: str | None) -> None:
    """Benchmark prompts (one per line, or JSONL with "prompt") as normalized keys in b_bench."""
    con.execute("CREATE OR REPLACE TEMP TABLE b_bench (key UBIGINT)")
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
    con.execute(f"INSERT INTO b_bench SELECT DISTINCT {_NORM_KEY} FROM (SELECT unnest(?::VARCHAR[]) AS p)",
                [prompts])


# ----------------------------------------------------------------------------- PII

# A text no signals.pii pattern can match has none of these, so it skips the Python pass.
# Each term is what one pattern's every match must contain, with Python's Unicode \d as
# \p{Nd} and its \s as any non-digit (RE2's classes are ASCII-only): an email's @, a phone's
# two digit groups and separator, a card's 13 digits, an IPv4's three dots, an IPv6's hex
# colon, a secret's prefix. Years, order numbers and "Note:" do not match.
# tests/signals/test_build_rules.py checks it against the redactor.
PII_PREFILTER = (r"@|\p{Nd}\p{Nd}\P{Nd}\p{Nd}\p{Nd}|(?:\p{Nd}[ -]?){12}\p{Nd}"
                 r"|\p{Nd}\.\p{Nd}{1,3}\.\p{Nd}{1,3}\.\p{Nd}|[0-9A-Fa-f]:[0-9A-Fa-f:]"
                 r"|sk-|AKIA|gh[pousr]_|github_pat_|xox[abprs]-|AIza|hf_|eyJ|Bearer ")

# Every interaction whose text is exported (the chosen and the rejected side of pairs): the
# snapshot's members, recorded with their users in the store (signals forget revokes by them).
_USED = """
    CREATE OR REPLACE TEMP TABLE b_used AS
    SELECT DISTINCT rid FROM (
        SELECT rid FROM b_ex WHERE dropped IS NULL
        UNION ALL SELECT other_rid FROM b_ex WHERE dropped IS NULL AND other_rid IS NOT NULL)"""


def _redact(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Find the PII in every exported text (signals.pii): b_red maps text -> redacted text.

    Each distinct text is redacted once; counts are PII spans replaced per kind,
    over the distinct texts. Texts that no PII pattern can match are skipped in SQL:
    build_interactions flags (`pii`) the interactions whose prompt or completion the
    prefilter matches, and only those are read again here.
    """
    from signals import pii

    con.execute("CREATE OR REPLACE TEMP TABLE b_pii_used AS "
                "SELECT rid FROM b_used JOIN b_int USING (rid) WHERE b_int.pii")
    query = """
        WITH used AS (
            SELECT i.completion,
                   from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]') AS prompt
            FROM interactions i SEMI JOIN b_pii_used u ON u.rid = i.rowid
        )
        SELECT DISTINCT t FROM (
            SELECT unnest(list_filter(list_transform(prompt, lambda m: m.content),
                                      lambda t: regexp_matches(t, $p))) AS t FROM used
            UNION ALL
            SELECT completion FROM used WHERE regexp_matches(completion, $p)
            UNION ALL
            SELECT o.edited_text FROM b_edits o SEMI JOIN b_used u USING (rid)
            WHERE regexp_matches(o.edited_text, $p))"""
    totals: dict[str, int] = {}
    changed_from, changed_to = [], []
    # streamed in batches: only the texts that change are kept in Python
    for batch in con.sql(query, params={"p": PII_PREFILTER}).to_arrow_reader(50_000):
        for text in batch.column(0).to_pylist():
            red, counts = pii.redact(text)
            if red != text:
                changed_from.append(text)
                changed_to.append(red)
            for k, n in counts.items():
                if n:
                    totals[k] = totals.get(k, 0) + int(n)
    con.execute("CREATE OR REPLACE TEMP TABLE b_red AS "
                "SELECT unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS r", [changed_from, changed_to])
    if changed_from:
        con.execute(_sql("build_redact"))
    return dict(sorted(totals.items()))


# ----------------------------------------------------------------------------- export


# Example rows per export chunk: bounds the memory of a chunk's texts.
EXPORT_CHUNK = int(os.environ.get("SIGNALS_BUILD_CHUNK", "150000"))
CHUNK_BLOCK = 64        # chunks start at multiples of this many rows of the store


def _export(con: duckdb.DuckDBPyConnection, out: Path) -> dict[str, dict]:
    """Write kind/split.parquet files in a stable row order; their row counts and sha256.

    The rows are ordered by (the interaction's row in the store, origin, the other side's
    row, label) in each file: the same store gives the same order, and chunks of consecutive
    rows (build_export.sql) read their texts from a range of the table, not a scan of it.
    Per chunk the texts of its interactions are read and parsed once (build_chunk.sql) and
    fetched as Arrow; each kind's rows come from DuckDB narrow (rows, flags, sorted) and take their
    texts from that chunk in Arrow (no wide rows sorted or converted per example). Row
    groups have ROW_GROUP rows whatever the chunks, so the bytes depend only on the rows.

    Assembling and writing a kind's rows (Arrow and Parquet, which release the GIL) run on
    that kind's own thread, in chunk order, while DuckDB reads the next chunk: the
    single-threaded encoding overlaps the queries and the three kinds' files are written in
    parallel. At most two chunks are in flight, so memory stays bounded.
    """
    with _jemalloc():
        return _export_chunks(con, out)


def _export_chunks(con: duckdb.DuckDBPyConnection, out: Path) -> dict[str, dict]:
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.compute as pc

    schemas = _schemas()
    con.execute(_sql("build_export"))
    for kind in KINDS:
        (out / kind).mkdir()
    writers = {(kind, split): _Writer(out / kind / f"{split}.parquet", schemas[kind])
               for kind in KINDS for split in SPLITS}
    chunk_texts, chunk_rows = (st.query for st in con.extract_statements(_sql("build_chunk")))
    pools = {kind: ThreadPoolExecutor(1, thread_name_prefix=f"export-{kind}") for kind in KINDS}
    try:
        in_flight: list = []
        for lo, hi in _chunks(con):
            con.execute("SET VARIABLE b_lo = CAST(? AS BIGINT)", [lo])
            con.execute("SET VARIABLE b_hi = CAST(? AS BIGINT)", [hi])
            table = con.sql(chunk_texts).to_arrow_table()
            txt = {name: table.column(name).combine_chunks() for name in table.column_names}
            del table
            rows = con.sql(chunk_rows).to_arrow_table()
            chunk, start = [], 0
            for kind in sorted(KINDS):      # the rows' order
                n = pc.sum(pc.equal(rows.column("kind"), kind)).as_py() or 0
                chunk.append(pools[kind].submit(_write_rows, kind, rows.slice(start, n), txt,
                                                writers[kind, "train"], writers[kind, "eval"]))
                start += n
            del rows
            for future in in_flight:      # the chunk before: done before a third is read
                future.result()
            in_flight = chunk
        for future in in_flight:
            future.result()
        closed = [pools[kind].submit(_close, writers[kind, split]) for kind in KINDS for split in SPLITS]
        files = {f"{kind}/{split}.parquet": future.result()
                 for (kind, split), future in zip(writers, closed, strict=True)}
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        for w in writers.values():
            w.close()
    return files


@contextlib.contextmanager
def _jemalloc():
    """Arrow's jemalloc pool (where the wheel has it) while exporting: the default mimalloc
    hands each chunk's large arrays back to the OS and faults them in again, which doubled
    the build's system time (bench/bench_build.py). Buffers remember their pool, so
    switching back afterwards is safe."""
    import pyarrow as pa

    if "jemalloc" not in pa.supported_memory_backends():
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.jemalloc_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _write_rows(kind: str, rows, txt, train: _Writer, eval_: _Writer) -> None:
    """One chunk's rows of `kind` (sorted: train rows, then eval rows), assembled and written."""
    import pyarrow.compute as pc

    idx = pc.index_in(rows.column("rid").combine_chunks(), value_set=txt["rid"])
    n_train = rows.num_rows - rows.column("is_eval").combine_chunks().true_count
    for writer, start, stop in ((train, 0, n_train), (eval_, n_train, rows.num_rows)):
        while start < stop:     # in pieces that fill the writer's row groups
            n = min(writer.room(), stop - start)
            writer.write(_assemble(kind, rows.slice(start, n), idx.slice(start, n), txt))
            start += n


def _close(writer: _Writer) -> dict:
    writer.close()
    return {"rows": writer.rows, "sha256": _sha256(writer.path)}


def _assemble(kind: str, rows, idx, txt):
    """One kind's rows with their texts taken from the chunk's texts (Arrow arrays by column)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def col(table, name):
        return table.column(name).combine_chunks()

    prompt = txt["prompt"].take(idx)
    own = txt["completion"].take(idx)
    text_a = pc.if_else(col(rows, "a_edit").fill_null(False), txt["edited_text"].take(idx), own)
    names = ["interaction_id", "app", "task", "user_id", "origin"]
    extras = [*(txt[c].take(idx) for c in ("interaction_id", "app", "task", "user_id")), col(rows, "origin")]
    if kind == "sft":
        return pa.RecordBatch.from_arrays([_append_message(prompt, text_a), *extras], ["messages", *names])
    if kind == "pref":
        text_b = pc.if_else(col(rows, "b_other").fill_null(False), col(rows, "other_text"), own)
        return pa.RecordBatch.from_arrays([prompt, _messages(text_a), _messages(text_b), *extras],
                                          ["prompt", "chosen", "rejected", *names])
    return pa.RecordBatch.from_arrays([prompt, _messages(text_a), col(rows, "label"), *extras],
                                      ["prompt", "completion", "label", *names])


def _assistant(content):
    import pyarrow as pa

    content = content.cast(pa.string())
    return pa.StructArray.from_arrays([pa.repeat("assistant", len(content)).cast(pa.string()), content],
                                      names=["role", "content"])


def _messages(content):
    """[{'role': 'assistant', 'content': c}] per row."""
    import numpy as np
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(np.arange(len(content) + 1, dtype=np.int32)), _assistant(content))


def _append_message(prompt, content):
    """prompt + [{'role': 'assistant', 'content': c}] per row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(prompt)
    lengths = pc.list_value_length(prompt).to_numpy(zero_copy_only=False).astype(np.int64)
    values = prompt.flatten().cast(pa.struct([("role", pa.string()), ("content", pa.string())]))
    total = len(values)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths + 1)
    order = np.empty(total + n, dtype=np.int64)
    order[np.arange(total) + np.repeat(np.arange(n), lengths)] = np.arange(total)
    order[offsets[1:] - 1] = total + np.arange(n)
    merged = pa.concat_arrays([values, _assistant(content)]).take(pa.array(order))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), merged)


def _chunks(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int | None]]:
    """[lo, hi) ranges of rows in the store holding about EXPORT_CHUNK example rows each.

    Examples are counted per block of CHUNK_BLOCK rows (a chunk starts at a block): far
    fewer groups to sort than one per row."""
    starts = [lo for (lo,) in con.execute("""
        SELECT min(block) FROM (
            SELECT block, sum(n) OVER (ORDER BY block) - n AS before
            FROM (SELECT rid // $w * $w AS block, count(*) AS n FROM b_exp GROUP BY block))
        GROUP BY before // $n ORDER BY 1""", {"w": CHUNK_BLOCK, "n": EXPORT_CHUNK}).fetchall()]
    return [(0 if k == 0 else lo, starts[k + 1] if k + 1 < len(starts) else None)
            for k, lo in enumerate(starts or [0])]


_DICT_COLUMNS = ["messages.list.element.role", "prompt.list.element.role", "chosen.list.element.role",
                 "rejected.list.element.role", "completion.list.element.role", "app", "task", "user_id",
                 "origin", "label"]


class _Writer:
    """Parquet with the contract's schema (nullable columns, whatever the data), in row
    groups of exactly ROW_GROUP rows, so the bytes depend only on the rows."""

    def __init__(self, path: Path, schema):
        import pyarrow.parquet as pq

        self.path, self.schema, self.rows, self.pending, self.buffered = path, schema, 0, [], 0
        # dictionaries only where values repeat (roles, app, task, users, origins): the texts'
        # dictionaries would overflow and be dropped, at a cost. Snappy, the default of pyarrow,
        # datasets and DuckDB: zstd made files ~20% smaller but took half the export's CPU time.
        self.writer = pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=_DICT_COLUMNS)

    def room(self) -> int:
        """Rows that complete the current row group: batches of this size are written as
        they are, without being copied into one."""
        return ROW_GROUP - self.buffered

    def write(self, batch) -> None:
        assert batch.num_rows <= self.room()
        self.pending.append(batch.cast(self.schema))
        self.buffered += batch.num_rows
        self.rows += batch.num_rows
        if self.buffered == ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        table = pa.Table.from_batches(self.pending, schema=self.schema)
        # one chunk per row group: the bytes do not depend on how the rows arrived
        self.writer.write_table(table.combine_chunks() if len(self.pending) > 1 else table,
                                row_group_size=ROW_GROUP)
        self.pending, self.buffered = [], 0

    def close(self) -> None:
        if self.writer is not None:
            if self.pending:
                self._flush()
            self.writer.close()
            self.writer = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(r: dict, files: dict) -> str:
    """`<recipe name>-<hash>` of the files' bytes, the recipe and the builder version."""
    blob = json.dumps({"recipe": r, "builder": BUILDER_VERSION,
                       "files": {k: v["sha256"] for k, v in sorted(files.items())}},
                      sort_keys=True, default=str)
    return f"{r['name']}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _summary(con: duckdb.DuckDBPyConnection) -> dict:
    """The manifest's counts per kind and split, KTO classes and exclusions, from one pass
    over the examples (and the interactions' reasons)."""
    counts = {kind: {split: 0 for split in SPLITS} for kind in KINDS}
    kto_classes = {split: {"desirable": 0, "undesirable": 0} for split in SPLITS}
    dropped: dict[str, int] = {}
    for kind, is_eval, label, reason, n in con.execute(
            "SELECT kind, is_eval, label, dropped, count(*) FROM b_ex GROUP BY ALL").fetchall():
        split = "eval" if is_eval else "train"
        if reason is not None:
            dropped[f"{kind}.{reason}"] = dropped.get(f"{kind}.{reason}", 0) + n
            continue
        counts[kind][split] += n
        if kind == "kto":
            kto_classes[split]["desirable" if label else "undesirable"] += n
    return {"counts": counts, "kto_classes": kto_classes,
            "exclusions": dict(sorted({**_exclusions(con), **dropped}.items()))}


def kto_weights(classes: dict, kto: dict | None = None) -> dict:
    """Desirable/undesirable loss weights per TRL's KTO guidance.

    TRL (Eq. 8 of the KTO paper) wants desirable_weight * n_desirable /
    (undesirable_weight * n_undesirable) in [1, 4/3]. The minority class is
    up-weighted to land at 7/6, inside the range, with margin for TRL's rounding:

    >>> kto_weights({"desirable": 100, "undesirable": 300})
    {'desirable_weight': 3.5, 'undesirable_weight': 1.0}
    >>> kto_weights({"desirable": 120, "undesirable": 100})
    {'desirable_weight': 1.0, 'undesirable_weight': 1.0}

    Weights given in the recipe (`kto.desirable_weight` / `undesirable_weight`) win.
    """
    n_d, n_u = classes.get("desirable", 0), classes.get("undesirable", 0)
    des, und = 1.0, 1.0
    if n_d and n_u:
        ratio = n_d / n_u
        if ratio < 1:
            des = round(n_u / n_d * 7 / 6, 4)
        elif ratio > 4 / 3:
            und = round(n_d / n_u * 6 / 7, 4)
    kto = kto or {}
    if kto.get("desirable_weight") is not None:
        des = float(kto["desirable_weight"])
    if kto.get("undesirable_weight") is not None:
        und = float(kto["undesirable_weight"])
    return {"desirable_weight": des, "undesirable_weight": und}


def _exclusions(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Why interactions did not become examples (`_summary` adds the examples' `kind.reason`)."""
    out: dict[str, int] = {}
    for reason, n in con.execute(
            "SELECT excluded, count(*) FROM b_int WHERE excluded IS NOT NULL GROUP BY ALL").fetchall():
        out[reason] = n
    no_signal = con.execute("""
        SELECT count(*) FROM b_int i
        WHERE i.excluded IS NULL
          AND NOT EXISTS (SELECT 1 FROM b_out o WHERE o.rid = i.rid AND o.outcome IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM b_ex e WHERE e.rid = i.rid)
          AND NOT EXISTS (SELECT 1 FROM b_ex e WHERE e.other_rid = i.rid)""").fetchone()[0]
    if no_signal:
        out["no_decisive_feedback"] = no_signal
    trivial = con.execute("SELECT count(*) FROM b_out WHERE had_trivial_edit AND outcome IS DISTINCT FROM 'edit'"
                          ).fetchone()[0]
    if trivial:
        out["pref.trivial_edit"] = trivial
    return out


def _watermark(con: duckdb.DuckDBPyConnection) -> dict:
    """What the store held when the snapshot was built."""
    i = con.execute("SELECT count(*), max(ts), max(ingest_id) FROM interactions").fetchone()
    f = con.execute("SELECT count(*), max(ts) FROM feedback").fetchone()
    o = con.execute("SELECT count(*) FROM optouts").fetchone()[0]
    t = con.execute("SELECT count(*) FROM tombstones").fetchone()[0]
    return {"interactions": i[0], "max_interaction_ts": i[1].isoformat() if i[1] else None,
            "max_ingest_id": i[2], "feedback": f[0], "max_feedback_ts": f[1].isoformat() if f[1] else None,
            "optouts": o, "tombstones": t}


def _publish(con: duckdb.DuckDBPyConnection, root: Path, tmp: Path, manifest: dict) -> Snapshot:
    """Move the files into root/version (or reuse an identical one) and record it in the store."""
    version = manifest["version"]
    final = root / version
    row = con.execute("SELECT revoked_at, revoked_reason FROM snapshots WHERE version = ?", [version]).fetchone()
    if row and row[0] is not None:
        raise SnapshotRevoked(f"snapshot {version} (identical to this build) was revoked on {row[0]} "
                              f"({row[1]}); change the recipe or the data to build a new one")
    if (final / "manifest.json").exists():
        snap = load_snapshot(root, version)
    else:
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        if final.exists():          # a half-written directory from a crash: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        snap = Snapshot(version, final, manifest)
    if row is None:
        con.execute("BEGIN")
        try:
            con.execute("INSERT INTO snapshots (version, recipe_name, path, manifest, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [version, manifest["recipe"]["name"], str(final),
                         json.dumps(snap.manifest, default=str), snap.manifest["created_at"]])
            con.execute("INSERT INTO snapshot_members SELECT ?, i.interaction_id, i.user_id "
                        "FROM interactions i SEMI JOIN b_used u ON u.rid = i.rowid", [version])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return snap


def _drop_temp_tables(con: duckdb.DuckDBPyConnection) -> None:
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary "
                               "AND table_name LIKE 'b\\_%' ESCAPE '\\'").fetchall():
        con.execute(f'DROP TABLE IF EXISTS temp."{name}"')


# ----------------------------------------------------------------------------- read / revoke


def load_snapshot(root: str | os.PathLike, version: str) -> Snapshot:
    """The snapshot `root/version`; SnapshotRevoked if it was revoked."""
    path = Path(root) / version
    manifest_file = path / "manifest.json"
    if not manifest_file.exists():
        raise FileNotFoundError(f"no snapshot {version!r} under {root} ({manifest_file} is missing)")
    marker = path / REVOKED_MARKER
    if marker.exists():
        info = json.loads(marker.read_text())
        raise SnapshotRevoked(f"snapshot {version} was revoked on {info.get('revoked_at')}: {info.get('reason')}")
    return Snapshot(version, path, read_manifest(manifest_file))


def is_revoked(store: str | os.PathLike | duckdb.DuckDBPyConnection, version: str) -> bool:
    """Whether the store marks `version` revoked (an unknown version is not revoked)."""
    con = store if isinstance(store, duckdb.DuckDBPyConnection) else store_mod.open_store(store, read_only=True)
    try:
        if not _has_snapshots_table(con):
            return False
        row = con.execute("SELECT revoked_at FROM snapshots WHERE version = ?", [version]).fetchone()
        return bool(row and row[0] is not None)
    finally:
        if con is not store:
            con.close()


def snapshots_with_users(con: duckdb.DuckDBPyConnection, user_ids: list[str]) -> list[str]:
    """Versions of every snapshot that held data of any of `user_ids` (revoked or not)."""
    rows = con.execute("SELECT DISTINCT version FROM snapshot_members WHERE user_id IN (SELECT unnest(?)) "
                       "ORDER BY version", [list(user_ids)]).fetchall()
    return [v for (v,) in rows]


def revoke_snapshots(con: duckdb.DuckDBPyConnection, versions: list[str], reason: str,
                     *, purge: bool = True) -> list[str]:
    """Mark `versions` revoked in the store and on disk; with `purge`, delete their Parquet files.

    Returns the versions newly revoked. The manifest stays, with a REVOKED.json
    beside it, as the record of what was withdrawn and why; `load_snapshot` refuses
    it and `is_revoked` says so, so no training run uses it again.
    """
    now = datetime.now(UTC)
    newly = []
    for version in versions:
        row = con.execute("SELECT path, revoked_at FROM snapshots WHERE version = ?", [version]).fetchone()
        if row is None:
            continue
        path, revoked_at = Path(row[0]), row[1]
        if revoked_at is None:
            con.execute("UPDATE snapshots SET revoked_at = ?, revoked_reason = ? WHERE version = ?",
                        [now, reason, version])
            newly.append(version)
        if path.is_dir():
            marker = path / REVOKED_MARKER
            if not marker.exists():
                marker.write_text(json.dumps({"version": version, "revoked_at": now.isoformat(),
                                              "reason": reason}, indent=2) + "\n")
            if purge:
                for kind in KINDS:
                    shutil.rmtree(path / kind, ignore_errors=True)
    return newly


def list_snapshots(store: str | os.PathLike | duckdb.DuckDBPyConnection) -> list[dict]:
    """Every snapshot the store knows, newest first, with its counts and revocation."""
    con = store if isinstance(store, duckdb.DuckDBPyConnection) else store_mod.open_store(store, read_only=True)
    try:
        if not _has_snapshots_table(con):
            return []
        rows = con.execute("""
            SELECT s.version, s.recipe_name, s.path, s.created_at, s.revoked_at, s.revoked_reason, s.manifest,
                   (SELECT count(*) FROM snapshot_members m WHERE m.version = s.version) AS members
            FROM snapshots s ORDER BY s.created_at DESC, s.version""").fetchall()
    finally:
        if con is not store:
            con.close()
    out = []
    for version, name, path, created, revoked, reason, manifest, members in rows:
        m = json.loads(manifest)
        out.append({"version": version, "recipe": name, "path": path,
                    "created_at": created.isoformat() if created else None,
                    "revoked_at": revoked.isoformat() if revoked else None, "revoked_reason": reason,
                    "counts": m.get("counts"), "interactions": members, "manifest": m})
    return out


def _has_snapshots_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'snapshots' "
                            "AND NOT temporary").fetchone()[0])
