"""Ingest log files into the signal store: validate in DuckDB SQL, quarantine, never twice.

    from signals.ingest import ingest_paths
    summary = ingest_paths(["logs/"], db="data/signal.duckdb")      # what `python -m signals ingest` runs

Each source file is one transaction: the store holds all of a file or none of it. A file
whose bytes (sha256) were ingested before, under the same source mapping, is skipped.
Lines are read as one text column (DuckDB's read_json aborts on one bad line), so every
record is either stored, recognised as a duplicate, or quarantined with its row and reason;
no file stops the ingest of the files after it. The SQL stages live in signals/sql/ingest_*.sql.
`signals.integrity.check_integrity(con)` lists what is wrong with a store (nothing, after any ingest).
Finding files and their formats: `signals.discover`.

Rules for hostile input:

- Paths. A path that exists is read as itself, even when its name holds glob characters
  (`data[1].jsonl`, `q?.jsonl`): it is escaped for DuckDB, whose readers expand `[ ? *`.
  Only a path that does not exist is expanded as a glob.
- Symbolic links. A file named on the command line is read even if it is a link. Inside a
  folder or a glob, links to files or folders are not followed: they are listed in the
  summary with status "symlink" and nothing is read through them, unless
  `follow_symlinks=True` (`--follow-symlinks`).
- Corrupt files. A file that cannot be read (a truncated or bad .gz, a broken tarball for
  an adapter, undecodable text for a mapping's JSON reader) gets status "corrupt": one
  quarantine row `corrupt_file` naming the file (no row number, no raw text) and an
  `ingests` row (0 records, 1 quarantined), so the same bytes are not retried; a later,
  complete file (other bytes) is ingested. The next files are read either way.
- Failed mappings. When DuckDB raises inside a SQL source mapping (a conversion or binder
  error, a value the mapping did not expect), the file gets status "mapping_failed": one
  quarantine row `mapping_error` (no row) naming the mapping and DuckDB's message, and an
  `ingests` row under the mapping's name and a digest of its text: the same mapping skips
  the file next time, a fixed one reads it again. Nothing of the file is stored.
- Long lines. A line longer than DuckDB's scan buffer (32 MiB at least) vanishes from its
  reader without an error; the bytes read are checked against the file's size, and on a
  mismatch the file is re-read through a cleaned copy in which that line is `too_large`.
- Control characters. A raw carriage return (or other raw control character) inside a
  line is not JSON: the line is quarantined as `malformed_json`; CRLF line ends are fine.
  A CSV that DuckDB cannot sniff (a raw carriage return in a field, stray text) is read by
  Python's csv module instead; rows with the wrong number of fields are `malformed_csv`.
- Hive folders (`user_id=bob/part.parquet`, CSV too). A partition value fills a field only
  when the file has no column of that name: a file's own values win. JSON lines files
  take nothing from folder names.
- Timestamps. `ts` must lie in [1970-01-01T00:00:00Z, 2100-01-01T00:00:00Z) (TS_MIN,
  TS_MAX; `ts_ok` in ingest_macros.sql): `infinity`, year 10000, years before 1 or 1970,
  negative epochs are quarantined as `invalid_timestamp`, for interactions, feedback
  records and nested events alike. Epoch numbers of 1e11 or more are milliseconds.
- Duplicate keys. In a JSON object that repeats a key, the first occurrence wins, at any
  depth, for native records (DuckDB's JSON functions) and for records of a source mapping
  (its readers parse with `signals.adapters.first_wins`) alike. Stored JSON (`prompt`,
  `metadata`) keeps the text as given; the dataset builder reads it with DuckDB, so the
  same first occurrence is what it sees.

Quarantine reasons: malformed_json, invalid_utf8, wrong_type, missing_field,
invalid_timestamp, unknown_kind, edit_without_text, rate_without_score,
choose_without_other, conflict, too_large (over max_record_chars, or over DuckDB's line
buffer), mapping_error (a source mapping could not map the record, or failed on the whole
file: no row), malformed_csv,
corrupt_file (the whole file could not be read; no row).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import duckdb

from signals import keys
from signals.discover import (
    SYMLINK_NOT_FOLLOWED,
    IngestError,
    discover,
    duck_path,
    file_hash,
    format_of,
    format_of_or_none,
    open_bytes,
    sniff_openai,
)
from signals.store import default_db, open_store, transaction

DEFAULT_MAX_RECORD_CHARS = 1_000_000
TS_MIN, TS_MAX = "1970-01-01T00:00:00+00:00", "2100-01-01T00:00:00+00:00"  # as in ingest_macros.sql ts_ok
DELIM = "\x01"  # never in valid JSON text (control characters must be escaped)


def sql(name: str) -> str:
    """The text of signals/sql/<name>."""
    return resources.files("signals.sql").joinpath(name).read_text()


# ---------------------------------------------------------------- staging: raw_input(ln, line) -> rec
# A stager defines two views and runs stage 1 (ingest_records.sql) over the first:
#   raw_input(ln, line): the lines in source order, ln NULL where the position is the line number
#                        (JSONL: read in parallel and parsed straight into rec, never held as text);
#   raw_src(ln, line):   the same lines numbered, read again only for the raw text of conflicts.




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


_REJECTS = "store_rejects = true, rejects_table = 'ingest_rejects', rejects_scan = 'ingest_scans'"


def _line_reader(path: Path, max_chars: int, extra: str = "") -> str:
    """read_csv(...) of a file's lines as one text column (no quoting, no header), its line and
    buffer sizes fitted to `max_chars`; `extra`: more read_csv options (rejects, ignore_errors)."""
    max_line = max(1 << 21, 4 * max_chars + 16)
    return (f"read_csv({_literal(duck_path(path))}, columns = {{'line': 'VARCHAR'}}, delim = {_literal(DELIM)}, "
            f"quote = '', escape = '', header = false, auto_detect = false, hive_partitioning = false, "
            f"max_line_size = {max_line}, buffer_size = {max(1 << 25, 2 * max_line)}{', ' + extra if extra else ''})")


def _parse_text_lines(con, path: Path, max_chars: int) -> int:
    """Parse a JSONL file read as one text column; returns how many lines DuckDB could not
    read (invalid UTF-8, over-long): then rec is incomplete and the caller cleans the file."""
    con.execute("DROP TABLE IF EXISTS ingest_rejects; DROP TABLE IF EXISTS ingest_scans")
    con.execute("CREATE OR REPLACE TEMP VIEW raw_input AS SELECT NULL::BIGINT AS ln, line "
                f"FROM {_line_reader(path, max_chars, _REJECTS)}")
    con.execute("CREATE OR REPLACE TEMP VIEW raw_src AS SELECT row_number() OVER () AS ln, line "
                f"FROM {_line_reader(path, max_chars)}")
    _parse(con)
    return con.execute("SELECT count(*) FROM ingest_rejects").fetchone()[0]


def _text_size(path: Path) -> tuple[int, int]:
    """The size of the file's text in bytes and the modulus it is known to: a .gz file's
    trailer holds the uncompressed size modulo 2**32 (of its last member only)."""
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < 18:
                return 0, 0
            f.seek(-4, os.SEEK_END)
            return int.from_bytes(f.read(4), "little"), 1 << 32
    return path.stat().st_size, 0


def _lost_lines(con, path: Path) -> bool:
    """True when DuckDB's reading of `path` lost text: a line longer than its scan buffer
    vanishes without a reject (DuckDB 2.0.1), so the bytes of the lines read (plus one line
    end each) must add up to the file's size, allowing for stripped carriage returns, a BOM
    and a missing final newline. Costs one aggregate over rec_t; a mismatch (also any
    multi-member .gz) only sends the file through the slower cleaned copy."""
    n, total = con.execute("SELECT count(*), coalesce(sum(nbytes), 0) FROM rec_t").fetchone()
    size, modulus = _text_size(path)
    deficit = size - total - n
    if modulus:
        deficit %= modulus
        if deficit >= modulus - 1:
            deficit -= modulus
    return not -1 <= deficit <= n + 3


def _clean_line(b: bytes, max_chars: int) -> tuple[str, bool]:
    """One line (without its line end) as text DuckDB can read, and whether it became a
    quarantine marker: invalid UTF-8, over-long, or holding a raw control character."""
    marker = None
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError as e:
        text = b.decode("utf-8", "replace")
        marker = ("invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line")
    if marker is None and len(text) > max_chars:
        marker = ("too_large", f"record is {len(text)} characters; the limit is {max_chars} (max_record_chars)")
    if marker is None and (DELIM in text or "\r" in text):
        marker = ("malformed_json", "raw control character in the line (JSON strings must escape it)")
    if marker is None:
        return text, False
    raw = text if len(text) <= max_chars else text[:10_000] + f"... [truncated, {len(text)} characters]"
    return json.dumps({"_reject": marker[0], "_detail": marker[1], "_raw": raw.replace(DELIM, "\\u0001")}), True


def _clean_copy(path: Path, out: Path, max_chars: int) -> None:
    """Rewrite a JSONL file line for line, replacing lines DuckDB cannot read (invalid UTF-8,
    stray control bytes, over-long) by quarantine markers, so line numbers stay right."""
    with open_bytes(path) as src, open(out, "w", encoding="utf-8") as dst:
        for b in src:
            dst.write(_clean_line(b.rstrip(b"\r\n"), max_chars)[0] + "\n")


def stage_jsonl(con, path: Path, max_chars: int, tmp: Path) -> None:
    """JSON lines, read by DuckDB as text. Lines it cannot read (invalid UTF-8, over-long, a raw
    carriage return, which its CSV scanner takes for a line end and then aborts on) make it
    fall back to a cleaned copy; the common file takes the fast path only."""
    try:
        rejected = _parse_text_lines(con, path, max_chars)
    except duckdb.InvalidInputException:
        rejected = True
    if rejected or _lost_lines(con, path):
        clean = tmp / "clean.jsonl"
        _clean_copy(path, clean, max_chars)
        if _parse_text_lines(con, clean, max_chars):
            raise IngestError(f"{path}: unreadable even after cleaning")


def stage_json(con, path: Path, max_chars: int, tmp: Path) -> None:
    """A .json file: a JSON array (row = element), else JSON lines."""
    with open_bytes(path) as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT row_number() OVER () AS ln, "
                "json::VARCHAR AS line FROM read_json_objects(?, format = 'array', maximum_object_size = ?)",
                [duck_path(path), max(1 << 24, 4 * max_chars)],
            )
        except Exception as e:  # the whole document is unreadable: one quarantine record
            con.execute("CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT 1::BIGINT AS ln, ?::VARCHAR AS line",
                        [json.dumps({"_reject": "malformed_json", "_detail": f"not a valid JSON array: {str(e).splitlines()[0]}",
                                     "_raw": head[:2000].decode("utf-8", "replace")})])
        _lines_from_table(con)
        return
    stage_jsonl(con, path, max_chars, tmp)


def _hive_only(con, reader: str, params: list) -> tuple[str, list]:
    """Hive partition columns (`user_id=bob/` in the path) that the file itself lacks, as a
    select-list suffix and its parameters. A file's own columns win over its folder names:
    DuckDB's hive_partitioning replaces a file column by the folder value, so the file is read
    with hive_partitioning = false and only the missing partition values are added."""
    own = {r[0].lower() for r in con.execute(f"DESCRIBE SELECT * FROM {reader.format(hive='false')}", params).fetchall()}
    extra = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader.format(hive='true')}", params).fetchall()
             if r[0].lower() not in own]
    if not extra:
        return "", []
    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in extra)
    row = con.execute(f"SELECT {cols} FROM {reader.format(hive='true')} LIMIT 1", params).fetchone()
    if row is None:  # an empty file: no rows to add them to
        return "", []
    return "".join(f', ? AS "{c.replace(chr(34), chr(34) * 2)}"' for c in extra), list(row)


def stage_parquet(con, path: Path, max_chars: int, tmp: Path) -> None:
    """Parquet: row n -> one JSON record, with hive partition columns from the path for the
    fields the file does not hold itself."""
    reader = "read_parquet(?, hive_partitioning = {hive})"
    extra, values = _hive_only(con, reader, [duck_path(path)])
    con.execute("CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT row_number() OVER () AS ln, "
                f"to_json(t)::VARCHAR AS line FROM (SELECT *{extra} FROM {reader.format(hive='false')}) t",
                values + [duck_path(path)])
    _lines_from_table(con)


def _csv_to_jsonl(path: Path, out: Path, max_chars: int) -> None:
    """The slow path for a CSV DuckDB cannot sniff (a raw carriage return in a field, stray
    text after the last row): Python's csv reader, row by row, into native JSON lines with
    `_source_row`; a row whose column count differs from the header is `malformed_csv`.
    Empty fields are missing, as DuckDB reads them; hive folder values are not added here."""
    import csv

    with open_bytes(path) as raw, open(out, "w", encoding="utf-8") as dst:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text, strict=False)
        header = next(reader, None) or []
        for n, row in enumerate(reader, 1):
            if len(row) != len(header):
                rec = {"_reject": "malformed_csv", "_source_row": n, "_raw": ",".join(row)[:10_000],
                       "_detail": f"row has {len(row)} fields, the header {len(header)}"}
            else:
                rec = {k: v for k, v in zip(header, row, strict=True) if v != ""}
                rec["_source_row"] = n
            dst.write(json.dumps(rec) + "\n")


def stage_csv(con, path: Path, max_chars: int, tmp: Path) -> None:
    """CSV with a header; every value read as text (quoted fields may hold newlines).
    Row numbers count data rows (1 = first row after the header). Hive partition columns
    fill only the fields the file lacks, as for Parquet. A file DuckDB cannot sniff is read
    by Python's csv module instead (_csv_to_jsonl)."""
    try:
        _stage_csv_duckdb(con, path, max_chars)
    except duckdb.InvalidInputException:
        converted = tmp / "csv.jsonl"
        _csv_to_jsonl(path, converted, max_chars)
        stage_jsonl(con, converted, max_chars, tmp)


def _stage_csv_duckdb(con, path: Path, max_chars: int) -> None:
    con.execute("DROP TABLE IF EXISTS ingest_rejects; DROP TABLE IF EXISTS ingest_scans")
    extra, values = _hive_only(con, "read_csv(?, header = true, all_varchar = true, hive_partitioning = {hive})",
                               [duck_path(path)])
    con.execute("CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT row_number() OVER () AS ln, "
                f"to_json(t)::VARCHAR AS line FROM (SELECT *{extra} FROM read_csv(?, header = true, all_varchar = true, "
                "hive_partitioning = false, store_rejects = true, rejects_table = 'ingest_rejects', "
                "rejects_scan = 'ingest_scans', max_line_size = ?)) t",
                values + [duck_path(path), max(1 << 21, 4 * max_chars + 16)])
    bad = con.execute("SELECT line, coalesce(csv_line, ''), error_message FROM ingest_rejects ORDER BY line").fetchall()
    if bad:
        con.executemany("INSERT INTO raw_lines VALUES (?, ?)", [
            (-1, json.dumps({"_reject": "malformed_csv", "_detail": msg.splitlines()[0], "_raw": raw, "_source_row": line}))
            for line, raw, msg in bad])
    _lines_from_table(con)


STAGERS = {"jsonl": stage_jsonl, "json": stage_json, "parquet": stage_parquet, "csv": stage_csv}


CHUNK_BYTES = 128 << 20
"""A SQL mapping's file is read by Python in pieces of about this many bytes of text (whole
lines), handed to DuckDB as a stream of Arrow batches: a `chunked` mapping maps and validates
each piece as it arrives, so what the ingest holds at once is bounded whatever the file's size."""

BATCH_BYTES = 2 << 20
"""A piece's lines go to DuckDB as Arrow record batches of about this many bytes: DuckDB scans
batches on all its threads (an in-memory table under one row group, 122,880 rows, is scanned on
one thread only). Of the sizes tried on bench_ingest's OTLP lines (1 to 4 MB, 8 and 32 MB), 2 MB
cost the least CPU, and not by a smooth curve: docs/formats.md#speed."""


def _lines_schema():
    """(ln, line): a file's lines as Arrow, for view src of a SQL mapping."""
    import pyarrow as pa

    return pa.schema([("ln", pa.int64()), ("line", pa.large_string())])


class SourceMappingFailed(Exception):
    """DuckDB raised while running a SQL mapping on a file (a conversion, a binder error, a value
    the mapping did not expect): the mapping failed, not the file; recorded as mapping_error."""


def _lines_table(data, end: int, before: int, max_chars: int, markers: list[str]):
    """The whole lines of data[:end] as an Arrow table (ln, line) in record batches of about
    BATCH_BYTES, ln counted from `before` + 1. A line DuckDB must not read (_clean_line: invalid
    UTF-8, over max_chars, a raw control character) is left blank and its quarantine marker,
    numbered, is appended to `markers`. The common piece (none such but CRLF line ends) is cut
    by numpy and bulk byte operations, not line by line in Python."""
    import numpy as np
    import pyarrow as pa

    if data.find(b"\r", 0, end) >= 0:
        data = bytes(data[:end]).replace(b"\r\n", b"\n")
        end = len(data)
    nl = np.flatnonzero(np.frombuffer(data, np.uint8, count=end) == 10)
    ends = nl if end == 0 or data[end - 1] == 10 else np.append(nl, end)
    n = len(ends)
    line = None
    if (n and int((np.diff(ends, prepend=-1) - 1).max()) <= max_chars and data.find(b"\r", 0, end) < 0
            and data.find(DELIM.encode(), 0, end) < 0):
        text = data.replace(b"\n", b"")        # line i ends where its "\n" did, less i (past `end`: no "\n")
        offsets = np.append(0, ends - np.arange(n)).astype(np.int64)
        line = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
        try:
            line.validate(full=True)            # UTF-8
        except pa.ArrowInvalid:
            line = None
    if line is None:                            # the slow path: line by line, as _clean_copy
        texts = []
        for i, b in enumerate(bytes(data[:ends[-1]]).split(b"\n") if n else []):
            text, marker = _clean_line(b.rstrip(b"\r"), max_chars)
            if marker:
                markers.append(json.dumps({**json.loads(text), "_source_row": before + i + 1}))
            texts.append("" if marker else text)
        line = pa.array(texts, pa.large_string())
    ln = pa.array(np.arange(before + 1, before + n + 1, dtype=np.int64))
    rows = max(1, int(n * BATCH_BYTES / max(end, 1)))
    return pa.Table.from_batches(pa.table({"ln": ln, "line": line}).to_batches(max_chunksize=rows), _lines_schema())


def _read_into(src, buf: bytearray, start: int) -> int:
    """Fill buf[start:] from `src`; returns the end of what was read (short only at the file's end)."""
    with memoryview(buf) as view:
        got = start
        while got < len(buf):
            k = src.readinto(view[got:])
            if not k:
                break
            got += k
    return got


def _line_pieces(path: Path, max_chars: int, chunk_bytes: int, markers: list[str]):
    """The file's lines as _lines_table pieces of about `chunk_bytes` of text each. Python reads
    the bytes, so no line is too long for a reader's buffer; each block is read into a fresh
    buffer after the previous one's unfinished line, not copied."""
    before, rest = 0, b""
    with open_bytes(path) as src:
        while True:
            data = bytearray(len(rest) + chunk_bytes)
            data[:len(rest)] = rest
            size = _read_into(src, data, len(rest))
            done = size < len(data)
            cut = size if done else data.rfind(b"\n", 0, size) + 1   # the end: the last line, even unended
            if cut or (done and not before):    # (an empty file: one empty piece)
                table = _lines_table(data, cut, before, max_chars, markers)
                yield table
                before += table.num_rows
            if done:
                return
            rest = bytes(data[cut:size])        # no line end in the block: one long line, read on


def _src_arrow(path: Path, max_chars: int, markers: list[str], failed: list[BaseException]):
    """The file's lines as a stream of Arrow pieces (_line_pieces of CHUNK_BYTES) that DuckDB
    pulls as it goes, so the file is never held whole in Python. An error reading the file
    inside the stream (a truncated .gz) is kept in `failed`, to be raised as itself."""
    import pyarrow as pa

    def batches():
        try:
            for table in _line_pieces(path, max_chars, CHUNK_BYTES, markers):
                yield from table.to_batches()
        except BaseException as e:
            failed.append(e)
            raise
    return pa.RecordBatchReader.from_batches(_lines_schema(), batches())


def stage_sql_mapping(con, mapping: dict, path: Path, max_chars: int) -> None:
    """A source mapping written in SQL (`sql:`, signals/sources.py): the file's lines go to DuckDB
    as Arrow (_src_arrow), seen by the mapping as view src(ln, line); the mapping's SELECT writes
    native JSON lines, which stage 1 (ingest_records.sql) parses into rec_t as for a native file.
    A `chunked` mapping streams the file: one statement maps and parses it piece by piece, the
    mapped lines never stored (its stages, if any, run first, once, over the whole file: view src
    with ln NULL); then a conflicting record's raw text is the record rebuilt (ingest_rebuilt.sql).
    DuckDB errors inside the mapping raise SourceMappingFailed."""
    import pyarrow as pa

    from signals import sources

    con.execute("SET VARIABLE source_params = ?::JSON", [json.dumps(mapping.get("params") or {})])
    con.execute(sources.sql_macros())
    *stages, last = sources.sql_stages(mapping)
    chunked = bool(mapping.get("chunked"))
    con.execute("CREATE OR REPLACE TEMP VIEW raw_input AS SELECT NULL::BIGINT AS ln, NULL::VARCHAR AS line WHERE false")
    _parse(con)                                            # an empty rec_t, and view rec_parse to insert through
    markers: list[str] = []
    failed: list[BaseException] = []

    def run(queries: list[str]) -> None:
        try:
            for q in queries:
                con.execute(q)
        except (duckdb.OutOfMemoryException, duckdb.InterruptException):
            raise
        except duckdb.Error as e:
            if failed:                          # reading the file failed, not the mapping
                raise failed[0] from None
            if "already been consumed" in str(e):
                raise SourceMappingFailed(f"source mapping {mapping['name']} ({mapping.get('_file', '?')}) reads view "
                                          "src more than once; a chunked mapping's lines are a stream, read once: "
                                          "join or unnest from one scan of src, or drop `chunked: true`") from None
            raise SourceMappingFailed(f"source mapping {mapping['name']} ({mapping.get('_file', '?')}) failed on "
                                      f"this file: {type(e).__name__}: {_first_line(e)}") from None

    stage_sql = [f"CREATE OR REPLACE TEMP TABLE stage{i} AS {q}" for i, q in enumerate(stages, 1)]
    con.execute("SET preserve_insertion_order = false")   # each line carries its _source_row: order is free
    try:
        if chunked and stages:
            con.execute("CREATE OR REPLACE TEMP VIEW src AS SELECT NULL::BIGINT AS ln, line "
                        f"FROM {_line_reader(path, max_chars, 'ignore_errors = true')} WHERE regexp_matches(line, '\\S')")
            run(stage_sql)
        con.register("src_arrow", _src_arrow(path, max_chars, markers, failed))
        lines = "SELECT ln, line FROM src_arrow WHERE regexp_matches(line, '\\S')"
        if chunked:                             # mapped and parsed as the file streams in
            con.execute(f"CREATE OR REPLACE TEMP VIEW src AS {lines}")
            con.execute(f"CREATE OR REPLACE TEMP VIEW raw_input AS SELECT NULL::BIGINT AS ln, line FROM ({last})")
            run(["INSERT INTO rec_t SELECT * FROM rec_parse"])
            if markers:
                con.register("src_markers", pa.table({"line": pa.array(markers, pa.large_string())}))
                con.execute("CREATE OR REPLACE TEMP VIEW raw_input AS SELECT NULL::BIGINT AS ln, line FROM src_markers")
                con.execute("INSERT INTO rec_t SELECT * FROM rec_parse")
        else:                                   # its queries may read src more than once: the lines stored
            run([f"CREATE OR REPLACE TEMP TABLE src_t AS {lines}", "CREATE OR REPLACE TEMP VIEW src AS SELECT * FROM src_t"]
                + stage_sql + [f"CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT line FROM ({last})"])
            if markers:
                con.register("src_markers", pa.table({"line": pa.array(markers, pa.large_string())}))
                con.execute("INSERT INTO raw_lines SELECT line FROM src_markers")
            con.execute("SET preserve_insertion_order = true")   # rec_t in raw_lines' order: raw_src below
            con.execute("CREATE OR REPLACE TEMP VIEW raw_input AS SELECT NULL::BIGINT AS ln, line FROM raw_lines")
            con.execute("INSERT INTO rec_t SELECT * FROM rec_parse")
    finally:
        con.execute("SET preserve_insertion_order = true")
        for i in range(1, len(stages) + 1):
            con.execute(f"DROP TABLE IF EXISTS stage{i}")
        con.execute("DROP VIEW IF EXISTS src; DROP TABLE IF EXISTS src_t")
        con.unregister("src_arrow")
        con.unregister("src_markers")
    if chunked:
        con.execute(sql("ingest_rebuilt.sql"))
    else:                           # every mapped line is in raw_lines, numbered as in rec_t
        con.execute("CREATE OR REPLACE TEMP VIEW raw_src AS SELECT rowid + 1 AS ln, line FROM raw_lines")


def _first_line(error: BaseException, limit: int = 500) -> str:
    return (str(error).strip().splitlines() or [""])[0][:limit]


# ---------------------------------------------------------------- one file

def _setup(con) -> None:
    con.execute(sql("ingest_macros.sql"))


def _store_setting(con, key: str, default):
    row = con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return type(default)(row[0]) if row else default


CORRUPT = (gzip.BadGzipFile, EOFError, zlib.error, tarfile.TarError, UnicodeDecodeError, duckdb.IOException,
           duckdb.InvalidInputException)
"""What reading a broken file raises (truncated or bad gzip, unreadable tarball, a file DuckDB
cannot scan): the file is recorded as corrupt and ingest goes on with the next one."""

_TEMP = ("DROP VIEW IF EXISTS rec; DROP VIEW IF EXISTS rec_parse; DROP VIEW IF EXISTS raw_input; DROP VIEW IF EXISTS raw_src; "
         "DROP VIEW IF EXISTS src; DROP TABLE IF EXISTS src_t; "
         "DROP TABLE IF EXISTS raw_lines; DROP TABLE IF EXISTS rec_t; DROP TABLE IF EXISTS fb; "
         "DROP TABLE IF EXISTS ist; DROP TABLE IF EXISTS fst; DROP TABLE IF EXISTS conflict_lines")


def _record_corrupt(con, path: Path, digest: str, src_name: str, started, error: BaseException) -> dict:
    """One quarantine row (reason corrupt_file, no row number) and one ingests row for a file
    that cannot be read, so it is never silently skipped and the same bytes are not retried."""
    detail = f"cannot read the file: {type(error).__name__}: {_first_line(error)}"
    return _record_file(con, path, digest, src_name, started, "corrupt", "corrupt_file", detail)


def _record_file(con, path: Path, digest: str, src_name: str, started, status: str, reason: str, detail: str,
                 key: str | None = None) -> dict:
    """A file that yields no records, as one quarantine row (no row number) and one ingests row
    recorded under source `key` (default: the source's name) for the check that skips a file seen."""
    with transaction(con):
        ingest_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests").fetchone()[0]
        con.execute("INSERT INTO quarantine (source_path, source_row, field, reason, detail, raw, user_id, ingest_id, "
                    "quarantined_at) VALUES (?, NULL, NULL, ?, ?, NULL, NULL, ?, now())",
                    [str(path), reason, detail, ingest_id])
        con.execute("INSERT INTO ingests VALUES (?, ?, ?, ?, 0, 0, 0, 0, 1, ?, now())",
                    [ingest_id, str(path), digest, key or src_name, started])
    return {"path": str(path), "status": status, "source": src_name, "ingest_id": ingest_id, "reason": detail,
            "records": 0, "interactions": 0, "feedback": 0, "duplicates": 0, "forgotten": 0,
            "quarantined": 1, "quarantine": {reason: 1}}


def _failed_key(src_name: str, mapping) -> str | None:
    """The source under which a SQL mapping's failure on a file is recorded: its name and a digest
    of its text, so the same mapping skips the file next time and a fixed one reads it again."""
    if mapping is None or "sql" not in mapping:
        return None
    text = json.dumps([mapping.get("sql"), mapping.get("params")], sort_keys=True)
    return f"{src_name}#failed-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def ingest_file(con, path: Path, *, source: str | None = None, max_chars: int = DEFAULT_MAX_RECORD_CHARS,
                mapping=None, digest: str | None = None) -> dict:
    """Ingest one file in one transaction; returns its counts (status: ingested, skipped or
    corrupt). `digest` is the file's sha256 when the caller has it already."""
    from signals import sources

    digest = digest or file_hash(path)
    src_name = source or "native"
    with tempfile.TemporaryDirectory(prefix="signals-ingest-") as tmpdir:
        tmp = Path(tmpdir)
        if mapping is None and source is None and format_of_or_none(path) in ("jsonl", "json") and sniff_openai(path):
            mapping, src_name = sources.load_mapping("openai"), "openai"
        failed_key = _failed_key(src_name, mapping)
        seen = con.execute("SELECT ingest_id FROM ingests WHERE content_hash = ? AND coalesce(source, 'native') IN (?, ?)",
                           [digest, src_name, failed_key or src_name]).fetchone()
        if seen:
            return {"path": str(path), "status": "skipped", "reason": f"already ingested (ingest {seen[0]})",
                    "source": src_name}
        started = con.execute("SELECT now()").fetchone()[0]
        con.execute("SET VARIABLE max_record_chars = ?", [max_chars])
        try:
            try:
                if mapping is not None and "sql" in mapping:
                    stage_sql_mapping(con, mapping, path, max_chars)
                elif mapping is not None:
                    mapped = tmp / "mapped.jsonl"
                    sources.apply_mapping(mapping, path, mapped)
                    stage_jsonl(con, mapped, max_chars, tmp)
                else:
                    STAGERS[format_of(path)](con, path, max_chars, tmp)
            except CORRUPT as e:
                con.execute(_TEMP)
                return _record_corrupt(con, path, digest, src_name, started, e)
            except SourceMappingFailed as e:
                con.execute(_TEMP)
                return _record_file(con, path, digest, src_name, started, "mapping_failed", "mapping_error", str(e),
                                    key=failed_key)
            for stage in ("ingest_feedback.sql", "ingest_resolve.sql"):
                con.execute(sql(stage))
            _conflict_lines(con)
            counts = dict(zip(["records", "duplicates_i", "forgotten_i"], con.execute(
                "SELECT (SELECT count(*) FROM rec), (SELECT count(*) FROM ist WHERE status = 'duplicate'), "
                "(SELECT count(*) FROM ist WHERE status = 'forgotten')").fetchone(), strict=True))
            fdup, fforg = con.execute("SELECT count(*) FILTER (status = 'duplicate'), "
                                      "count(*) FILTER (status = 'forgotten') FROM fst").fetchone()
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
            con.execute(_TEMP)
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


# ---------------------------------------------------------------- many files

def ingest_paths(paths, db: str | os.PathLike | None = None, source: str | None = None, *,
                 wait: float = 0.0, max_record_chars: int | None = None, progress: bool | None = None,
                 follow_symlinks: bool = False) -> dict:
    """Ingest files, folders or globs into the store at `db` (default: SIGNALS_DB or
    data/signal.duckdb). `source` names a mapping in conf/source/ (or a YAML path); without
    it the format follows the file name, and chat-completion logs are detected. Inside folders
    and globs, symbolic links are listed (status "symlink") but not read unless
    `follow_symlinks`; a file that cannot be read (truncated .gz) is recorded (status
    "corrupt", a `corrupt_file` quarantine row) and the next file is read.

    Returns {"files": [...per-file counts...], "records", "interactions", "feedback",
    "duplicates", "forgotten", "pending", "quarantined", "quarantine": {reason: n},
    "skipped_files", "corrupt_files", "failed_mapping_files", "symlinks_skipped"}; each file's
    status is ingested, skipped (already ingested), corrupt, mapping_failed or symlink. Raises
    IngestError for a path that does not exist and signals.store.StoreLocked when another
    writer holds the store past `wait` seconds.
    """
    from signals import sources

    mapping = sources.load_mapping(source) if source else None
    extra = tuple(mapping.get("suffixes", ())) if mapping else ()
    links: list[Path] = []
    files = discover(paths, extra, follow_symlinks=follow_symlinks, skipped=links)
    if mapping and mapping.get("only_suffixes"):     # e.g. a save_to_disk folder: data-*.arrow, not state.json
        files = [f for f in files if f.name.lower().endswith(extra)]
    db = str(db or default_db())
    con = open_store(db, wait=wait)
    try:
        _setup(con)
        keys.install(con, db)           # tombstones are keyed hashes (signals/keys.py)
        con.execute("SET VARIABLE ingest_forgets = (SELECT (SELECT count(*) FROM tombstones) "
                    "+ (SELECT count(*) FROM forgotten_interactions) > 0)")
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

        results = [{"path": str(p), "status": "symlink", "reason": SYMLINK_NOT_FOLLOWED} for p in links]
        # the next file is hashed (hashlib releases the GIL) while DuckDB works on this one
        with ThreadPoolExecutor(max_workers=1) as pool:
            nxt = pool.submit(file_hash, files[0]) if files else None
            for i, path in enumerate(tqdm(files, desc="ingest", unit="file", disable=not progress or len(files) < 2)):
                digest = nxt.result()
                nxt = pool.submit(file_hash, files[i + 1]) if i + 1 < len(files) else None
                results.append(ingest_file(con, path, source=mapping["name"] if mapping else None,
                                           max_chars=max_chars, mapping=mapping, digest=digest))
        pending = con.execute("SELECT count(*) FROM pending_feedback").fetchone()[0]
        if db != ":memory:":
            from signals import suppress

            suppress.refresh(con, db)       # a gateway learns opt-outs made before it started
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
            "skipped_files": sum(r["status"] == "skipped" for r in results),
            "corrupt_files": sum(r["status"] == "corrupt" for r in results),
            "failed_mapping_files": sum(r["status"] == "mapping_failed" for r in results),
            "symlinks_skipped": sum(r["status"] == "symlink" for r in results)}
