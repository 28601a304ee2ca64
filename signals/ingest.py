"""Ingest log files into the signal store: validate in DuckDB SQL, quarantine, never twice.

    from signals.ingest import ingest_paths
    summary = ingest_paths(["logs/"], db="data/signal.duckdb")      # what `python -m signals ingest` runs

Each source file is one transaction: the store holds all of a file or none of it. A file
whose bytes (sha256) were ingested before, under the same source mapping, is skipped.
Lines are read as one text column (DuckDB's read_json aborts on one bad line), so every
record is either stored, recognised as a duplicate, or quarantined with its row and reason.
The SQL stages live in signals/sql/ingest_*.sql.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from signals.store import default_db, open_store, transaction

SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz", ".parquet", ".csv", ".csv.gz")
DEFAULT_MAX_RECORD_CHARS = 1_000_000
DELIM = "\x01"  # never in valid JSON text (control characters must be escaped)


def sql(name: str) -> str:
    """The text of signals/sql/<name>."""
    return resources.files("signals.sql").joinpath(name).read_text()


class IngestError(ValueError):
    """A source that cannot be ingested at all (missing path, unknown format)."""


# ---------------------------------------------------------------- finding sources

def supported(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in SUFFIXES)


def discover(paths, extra_suffixes: tuple[str, ...] = ()) -> list[Path]:
    """Files named by `paths`: files, folders (recursive, hive layouts too) and globs."""
    out: list[Path] = []

    def ok(p: Path) -> bool:
        return supported(p) or p.name.lower().endswith(extra_suffixes)

    for raw in paths:
        raw = str(raw)
        matches = [Path(m) for m in sorted(glob.glob(raw, recursive=True))] if glob.has_magic(raw) else [Path(raw)]
        if not matches:
            raise IngestError(f"{raw}: no file matches this pattern")
        for p in matches:
            if p.is_dir():
                out += sorted(f for f in p.rglob("*") if f.is_file() and ok(f) and not f.name.startswith("."))
            elif p.is_file():
                out.append(p)
            else:
                raise IngestError(f"{p}: no such file or folder")
    seen, uniq = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            uniq.append(p)
    return uniq


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- staging: raw_input(ln, line) -> rec
# A stager defines two views and runs stage 1 (ingest_records.sql) over the first:
#   raw_input(ln, line): the lines in source order, ln NULL where the position is the line number
#                        (JSONL: read in parallel and parsed straight into rec, never held as text);
#   raw_src(ln, line):   the same lines numbered, read again only for the raw text of conflicts.

def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _literal(text: str) -> str:
    """A SQL string literal (a view cannot hold bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _parse(con) -> None:
    con.execute(sql("ingest_records.sql"))


def _lines_from_table(con) -> None:
    """raw_lines(ln, line) is staged: parse it."""
    con.execute("CREATE OR REPLACE TEMP VIEW raw_input AS SELECT ln, line FROM raw_lines")
    con.execute("CREATE OR REPLACE TEMP VIEW raw_src AS SELECT ln, line FROM raw_lines")
    _parse(con)


def _parse_text_lines(con, path: Path, max_chars: int) -> int:
    """Parse a JSONL file read as one text column; returns how many lines DuckDB could not
    read (invalid UTF-8, over-long): then rec is incomplete and the caller cleans the file."""
    max_line = max(1 << 21, 4 * max_chars + 16)
    opts = (f"columns = {{'line': 'VARCHAR'}}, delim = {_literal(DELIM)}, quote = '', escape = '', "
            f"header = false, auto_detect = false, max_line_size = {max_line}, "
            f"buffer_size = {max(1 << 25, 2 * max_line)}")
    con.execute("DROP TABLE IF EXISTS ingest_rejects; DROP TABLE IF EXISTS ingest_scans")
    con.execute(f"CREATE OR REPLACE TEMP VIEW raw_input AS SELECT NULL::BIGINT AS ln, line FROM read_csv("
                f"{_literal(str(path))}, {opts}, store_rejects = true, rejects_table = 'ingest_rejects', "
                "rejects_scan = 'ingest_scans')")
    con.execute(f"CREATE OR REPLACE TEMP VIEW raw_src AS SELECT row_number() OVER () AS ln, line "
                f"FROM read_csv({_literal(str(path))}, {opts})")
    _parse(con)
    return con.execute("SELECT count(*) FROM ingest_rejects").fetchone()[0]


def _clean_copy(path: Path, out: Path, max_chars: int) -> None:
    """Rewrite a JSONL file line for line, replacing lines DuckDB cannot read (invalid UTF-8,
    stray control bytes, over-long) by quarantine markers, so line numbers stay right."""
    with _open_bytes(path) as src, open(out, "w", encoding="utf-8") as dst:
        for b in src:
            b = b.rstrip(b"\r\n")
            marker = None
            try:
                text = b.decode("utf-8")
            except UnicodeDecodeError as e:
                text = b.decode("utf-8", "replace")
                marker = ("invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line")
            if marker is None and len(text) > max_chars:
                marker = ("too_large", f"record is {len(text)} characters; the limit is {max_chars} (max_record_chars)")
            if marker is None and DELIM in text:
                marker = ("malformed_json", "raw control character in the line")
            if marker:
                raw = text if len(text) <= max_chars else text[:10_000] + f"... [truncated, {len(text)} characters]"
                text = json.dumps({"_reject": marker[0], "_detail": marker[1], "_raw": raw.replace(DELIM, "\\u0001")})
            dst.write(text + "\n")


def stage_jsonl(con, path: Path, max_chars: int, tmp: Path) -> None:
    if _parse_text_lines(con, path, max_chars):
        clean = tmp / "clean.jsonl"
        _clean_copy(path, clean, max_chars)
        if _parse_text_lines(con, clean, max_chars):
            raise IngestError(f"{path}: unreadable even after cleaning")


def stage_json(con, path: Path, max_chars: int, tmp: Path) -> None:
    """A .json file: a JSON array (row = element), else JSON lines."""
    with _open_bytes(path) as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT row_number() OVER () AS ln, "
                "json::VARCHAR AS line FROM read_json_objects(?, format = 'array', maximum_object_size = ?)",
                [str(path), max(1 << 24, 4 * max_chars)],
            )
        except Exception as e:  # the whole document is unreadable: one quarantine record
            con.execute("CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT 1::BIGINT AS ln, ?::VARCHAR AS line",
                        [json.dumps({"_reject": "malformed_json", "_detail": f"not a valid JSON array: {str(e).splitlines()[0]}",
                                     "_raw": head[:2000].decode("utf-8", "replace")})])
        _lines_from_table(con)
        return
    stage_jsonl(con, path, max_chars, tmp)


def stage_parquet(con, path: Path, max_chars: int, tmp: Path) -> None:
    """Parquet (hive partition columns from the path included): row n -> one JSON record."""
    con.execute("CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT row_number() OVER () AS ln, "
                "to_json(t)::VARCHAR AS line FROM read_parquet(?, hive_partitioning = true) t", [str(path)])
    _lines_from_table(con)


def stage_csv(con, path: Path, max_chars: int, tmp: Path) -> None:
    """CSV with a header; every value read as text (quoted fields may hold newlines).
    Row numbers count data rows (1 = first row after the header)."""
    con.execute("DROP TABLE IF EXISTS ingest_rejects; DROP TABLE IF EXISTS ingest_scans")
    con.execute("CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT row_number() OVER () AS ln, "
                "to_json(t)::VARCHAR AS line FROM read_csv(?, header = true, all_varchar = true, "
                "store_rejects = true, rejects_table = 'ingest_rejects', rejects_scan = 'ingest_scans', "
                "max_line_size = ?) t", [str(path), max(1 << 21, 4 * max_chars + 16)])
    bad = con.execute("SELECT line, coalesce(csv_line, ''), error_message FROM ingest_rejects ORDER BY line").fetchall()
    if bad:
        con.executemany("INSERT INTO raw_lines VALUES (?, ?)", [
            (-1, json.dumps({"_reject": "malformed_csv", "_detail": msg.splitlines()[0], "_raw": raw, "_source_row": line}))
            for line, raw, msg in bad])
    _lines_from_table(con)


STAGERS = {"jsonl": stage_jsonl, "json": stage_json, "parquet": stage_parquet, "csv": stage_csv}


def format_of(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                        (".parquet", "parquet"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    raise IngestError(f"{path}: unknown format (expected one of {', '.join(SUFFIXES)} or --source NAME)")


def sniff_openai(path: Path) -> bool:
    """True when the first record looks like a chat-completion log (request messages + choices)."""
    from signals.sources import is_openai_record

    try:
        with _open_bytes(path) as f:
            head = f.read(1 << 20).decode("utf-8", "replace").lstrip()
    except OSError:
        return False
    if head.startswith("["):
        head = head[1:].lstrip()
    dec = json.JSONDecoder()
    try:
        rec, _ = dec.raw_decode(head)
    except ValueError:
        first = head.split("\n", 1)[0]
        try:
            rec = json.loads(first)
        except ValueError:
            return False
    return isinstance(rec, dict) and is_openai_record(rec)


# ---------------------------------------------------------------- one file

def _setup(con) -> None:
    con.execute(sql("ingest_macros.sql"))


def _store_setting(con, key: str, default):
    row = con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return type(default)(row[0]) if row else default


def ingest_file(con, path: Path, *, source: str | None = None, max_chars: int = DEFAULT_MAX_RECORD_CHARS,
                mapping=None, digest: str | None = None) -> dict:
    """Ingest one file in one transaction; returns its counts (status: ingested/skipped).
    `digest` is the file's sha256 when the caller has it already."""
    from signals import sources

    digest = digest or file_hash(path)
    src_name = source or "native"
    with tempfile.TemporaryDirectory(prefix="signals-ingest-") as tmpdir:
        tmp = Path(tmpdir)
        if mapping is None and source is None and format_of_or_none(path) in ("jsonl", "json") and sniff_openai(path):
            mapping, src_name = sources.load_mapping("openai"), "openai"
        seen = con.execute("SELECT ingest_id FROM ingests WHERE content_hash = ? AND coalesce(source, 'native') = ?",
                           [digest, src_name]).fetchone()
        if seen:
            return {"path": str(path), "status": "skipped", "reason": f"already ingested (ingest {seen[0]})",
                    "source": src_name}
        started = con.execute("SELECT now()").fetchone()[0]
        con.execute("SET VARIABLE max_record_chars = ?", [max_chars])
        if mapping is not None:
            mapped = tmp / "mapped.jsonl"
            sources.apply_mapping(mapping, path, mapped)
            stage_jsonl(con, mapped, max_chars, tmp)
        else:
            STAGERS[format_of(path)](con, path, max_chars, tmp)
        for stage in ("ingest_feedback.sql", "ingest_resolve.sql"):
            con.execute(sql(stage))
        _conflict_lines(con)
        counts = dict(zip(["records", "duplicates_i", "forgotten_i"], con.execute(
            "SELECT (SELECT count(*) FROM rec), (SELECT count(*) FROM ist WHERE status = 'duplicate'), "
            "(SELECT count(*) FROM ist WHERE status = 'forgotten')").fetchone(), strict=True))
        fdup, fforg = con.execute("SELECT count(*) FILTER (status = 'duplicate'), count(*) FILTER (status = 'forgotten') "
                                  "FROM fst").fetchone()
        try:
            with transaction(con):
                ingest_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests").fetchone()[0]
                con.execute("SET VARIABLE ingest_id = ?", [ingest_id])
                con.execute("SET VARIABLE source_path = ?", [str(path)])
                con.execute(sql("ingest_commit.sql"))
                added_i = con.execute("SELECT count(*) FROM interactions WHERE ingest_id = ?",
                                      [ingest_id]).fetchone()[0]
                added_f = con.execute("SELECT count(*) FROM feedback WHERE ingest_id = ?", [ingest_id]).fetchone()[0]
                quarantine = dict(con.execute("SELECT reason, count(*) FROM quarantine WHERE ingest_id = ? "
                                              "GROUP BY reason ORDER BY reason", [ingest_id]).fetchall())
                dups = counts["duplicates_i"] + fdup
                con.execute("INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                            [ingest_id, str(path), digest, src_name, counts["records"], added_i, added_f, dups,
                             sum(quarantine.values()), started])
        finally:
            con.execute("DROP VIEW IF EXISTS rec; DROP VIEW IF EXISTS raw_input; DROP VIEW IF EXISTS raw_src; "
                        "DROP TABLE IF EXISTS raw_lines; DROP TABLE IF EXISTS rec_t; DROP TABLE IF EXISTS fb; "
                        "DROP TABLE IF EXISTS ist; DROP TABLE IF EXISTS fst; DROP TABLE IF EXISTS conflict_lines")
    return {"path": str(path), "status": "ingested", "source": src_name, "ingest_id": ingest_id,
            "records": counts["records"], "interactions": added_i, "feedback": added_f,
            "duplicates": dups, "forgotten": counts["forgotten_i"] + fforg,
            "quarantined": sum(quarantine.values()), "quarantine": quarantine}


def _conflict_lines(con) -> None:
    """conflict_lines(ln, line): the raw text of conflicting records (rare), read from raw_src;
    rec keeps the text of quarantined lines only."""
    con.execute("CREATE OR REPLACE TEMP TABLE conflict_lines (ln BIGINT, line VARCHAR)")
    if con.execute("SELECT EXISTS (SELECT 1 FROM ist WHERE status = 'conflict') "
                   "OR EXISTS (SELECT 1 FROM fst WHERE status = 'conflict' AND idx = 0)").fetchone()[0]:
        con.execute("INSERT INTO conflict_lines SELECT ln, line FROM raw_src WHERE ln IN ("
                    "SELECT ln FROM ist WHERE status = 'conflict' UNION "
                    "SELECT ln FROM fst WHERE status = 'conflict' AND idx = 0)")


def format_of_or_none(path: Path) -> str | None:
    try:
        return format_of(path)
    except IngestError:
        return None


# ---------------------------------------------------------------- many files

def ingest_paths(paths, db: str | os.PathLike | None = None, source: str | None = None, *,
                 wait: float = 0.0, max_record_chars: int | None = None, progress: bool | None = None) -> dict:
    """Ingest files, folders or globs into the store at `db` (default: SIGNALS_DB or
    data/signal.duckdb). `source` names a mapping in conf/source/ (or a YAML path); without
    it the format follows the file name, and chat-completion logs are detected.

    Returns {"files": [...per-file counts...], "records", "interactions", "feedback",
    "duplicates", "forgotten", "pending", "quarantined", "quarantine": {reason: n},
    "skipped_files"}. Raises IngestError for a path that does not exist and
    signals.store.StoreLocked when another writer holds the store past `wait` seconds.
    """
    from signals import sources

    mapping = sources.load_mapping(source) if source else None
    extra = tuple(mapping.get("suffixes", ())) if mapping else ()
    files = discover(paths, extra)
    db = str(db or default_db())
    con = open_store(db, wait=wait)
    try:
        _setup(con)
        max_chars = int(max_record_chars or _store_setting(con, "max_record_chars", DEFAULT_MAX_RECORD_CHARS))
        memory = os.environ.get("SIGNALS_MEMORY_LIMIT", "1.5GB")
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory):
            raise IngestError(f"SIGNALS_MEMORY_LIMIT={memory!r}: expected a size like 1GB or 512MiB")
        con.execute(f"SET memory_limit = '{memory}'")  # SET takes no bound parameters; checked above
        con.execute("SET enable_progress_bar = false")  # it writes to stdout; tqdm reports per file
        if progress is None:
            import sys
            progress = sys.stderr.isatty()
        from tqdm import tqdm

        results = []
        # the next file is hashed (hashlib releases the GIL) while DuckDB works on this one
        with ThreadPoolExecutor(max_workers=1) as pool:
            nxt = pool.submit(file_hash, files[0]) if files else None
            for i, path in enumerate(tqdm(files, desc="ingest", unit="file", disable=not progress or len(files) < 2)):
                digest = nxt.result()
                nxt = pool.submit(file_hash, files[i + 1]) if i + 1 < len(files) else None
                results.append(ingest_file(con, path, source=mapping["name"] if mapping else None,
                                           max_chars=max_chars, mapping=mapping, digest=digest))
        pending = con.execute("SELECT count(*) FROM pending_feedback").fetchone()[0]
    finally:
        con.close()
    total = Counter()
    quarantine = Counter()
    for r in results:
        for k in ("records", "interactions", "feedback", "duplicates", "forgotten", "quarantined"):
            total[k] += r.get(k, 0)
        quarantine.update(r.get("quarantine", {}))
    return {"db": db, "files": results, **{k: total[k] for k in
            ("records", "interactions", "feedback", "duplicates", "forgotten", "quarantined")},
            "pending": pending, "quarantine": dict(sorted(quarantine.items())),
            "skipped_files": sum(r["status"] == "skipped" for r in results)}
