"""Property (issue 14, item 6): ingest of arbitrary bytes and records always returns, every
input record is stored, quarantined or counted as a duplicate, and the store passes
check_integrity. Bounded: 10 examples of one or two files of up to 12 lines each, into one
store (~0.7 s a file on 2 busy cores, most of it DuckDB planning the ingest SQL)."""

from __future__ import annotations

import atexit
import csv
import gzip
import io
import json
import re
import shutil
import tempfile
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signals.ingest import ingest_paths
from signals.integrity import check_integrity

IDS = st.one_of(st.sampled_from(["a", "b", "c", "a/fb1", "", " ", 1, 2**70, -1, 1.5, True, None]),
                st.text(max_size=4))
TS = st.one_of(st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00+02:00", 1714550400, 1714550400123,
                                "1714550400", 0, -1, "infinity", "10000-01-01", "0000-01-01", "2099-12-31T23:59:59Z",
                                "2100-01-01", "", "yesterday", 1e300, None, [], {}]),
               st.integers(), st.floats(allow_nan=False), st.text(max_size=12))
JUNK = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]) | JUNK,
                                 "content": st.text(max_size=20) | JUNK})
PROMPT = st.one_of(st.text(max_size=20), st.lists(MESSAGE, max_size=3), JUNK)
KIND = st.sampled_from(["accept", "edit", "reject", "rate", "choose", "love", "", None, 3])


def _record(fields: dict, optional: dict):
    return st.fixed_dictionaries(fields, optional=optional)


EVENT_FIELDS = {"kind": KIND}
EVENT_OPTIONAL = {"event_id": IDS, "interaction_id": IDS, "ts": TS, "edited_text": st.text(max_size=10) | JUNK,
                  "score": st.floats() | st.integers() | JUNK, "other_interaction_id": IDS, "user_id": IDS,
                  "metadata": JUNK}
INTERACTION = _record({"interaction_id": IDS, "ts": TS, "prompt": PROMPT, "completion": st.text(max_size=30) | JUNK},
                      {"user_id": IDS, "session_id": IDS, "app": IDS, "task": IDS, "model_id": IDS,
                       "metadata": JUNK | st.dictionaries(st.text(max_size=4), JUNK, max_size=3),
                       "feedback": st.lists(_record(EVENT_FIELDS, EVENT_OPTIONAL) | JUNK, max_size=3) | JUNK})
EVENT = _record({"event_id": IDS, "interaction_id": IDS, "ts": TS, "kind": KIND},
               {k: v for k, v in EVENT_OPTIONAL.items() if k not in ("event_id", "interaction_id", "ts")})


@st.composite
def lines(draw) -> list[bytes]:
    """Up to 12 lines: records (JSON-encoded, ASCII or not), arbitrary text, arbitrary bytes,
    repeats of an earlier line (duplicates, conflicts)."""
    out: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["interaction", "interaction", "event", "text", "bytes", "repeat"]))
        if kind == "repeat" and out:
            out.append(draw(st.sampled_from(out)))
        elif kind in ("interaction", "event", "repeat"):
            rec = draw(INTERACTION if kind != "event" else EVENT)
            out.append(json.dumps(rec, ensure_ascii=draw(st.booleans())).encode())
        elif kind == "text":
            out.append(draw(st.text(max_size=40)).encode("utf-8", "surrogatepass"))
        else:
            out.append(draw(st.binary(max_size=40)))
    return out


FILE = st.tuples(lines(), st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.booleans())
WHITESPACE = re.compile(rb"[ \t\r\n\f\v]*")


def _write(path: Path, body: list[bytes], eol: bytes, final_eol: bool, gz: bool) -> tuple[Path, int, set[int]]:
    """Write the file; returns its path, line count and the numbers of its non-blank lines."""
    data = eol.join(body) + (eol if final_eol and body else b"")
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    split = data.split(b"\n")
    if split and split[-1] == b"":
        split.pop()
    return path, len(split), {n for n, line in enumerate(split, 1) if not WHITESPACE.fullmatch(line)}


STORE = Path(tempfile.mkdtemp(prefix="ingest-prop-"))  # one store for all examples: ids repeat across
                                                        # them, so duplicates and conflicts meet the store;
                                                        # a fresh store would cost ~0.5 s an example
atexit.register(shutil.rmtree, STORE, ignore_errors=True)


def _counts(db: str) -> tuple[int, int, int]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute("SELECT (SELECT count(*) FROM interactions), (SELECT count(*) FROM feedback), "
                           "(SELECT count(*) FROM quarantine)").fetchone()
    finally:
        con.close()


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=st.lists(FILE, min_size=1, max_size=2))
def test_ingest_keeps_or_quarantines_every_record_and_the_store_stays_sound(files):
    tmp = Path(tempfile.mkdtemp(dir=STORE))
    db = str(STORE / "s.duckdb")
    try:
        written = [_write(tmp / f"f{i}.jsonl", *f) for i, f in enumerate(files)]
        before = _counts(db) if Path(db).exists() else (0, 0, 0)
        s = ingest_paths([p for p, _, _ in written], db=db)          # returns: never raises on content
        con = duckdb.connect(db, read_only=True)
        try:
            assert check_integrity(con) == []
            for (path, n_lines, nonblank), f in zip(written, s["files"], strict=True):
                assert f["path"] == str(path)
                if f["status"] == "skipped":                          # the same bytes were ingested before
                    continue
                assert f["status"] == "ingested", f                   # text is never a corrupt file
                covered = {r for (r,) in con.execute(
                    "SELECT source_row FROM interactions WHERE ingest_id = $1 UNION ALL "
                    "SELECT source_row FROM feedback WHERE ingest_id = $1 UNION ALL "
                    "SELECT source_row FROM quarantine WHERE ingest_id = $1", [f["ingest_id"]]).fetchall()}
                assert covered <= set(range(1, n_lines + 1)), (covered, n_lines)     # no phantom rows
                # every non-blank line is stored, quarantined, or one of the duplicates counted
                assert len(nonblank - covered) <= f["duplicates"], (nonblank - covered, f)
                assert f["records"] >= len(nonblank)
        finally:
            con.close()
        after = _counts(db)
        assert tuple(a - b for a, b in zip(after, before, strict=True)) == \
            (s["interactions"], s["feedback"], s["quarantined"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENAI_LOG = st.fixed_dictionaries(
    {"id": IDS, "created": TS, "messages": st.lists(MESSAGE, max_size=2) | JUNK,
     "choices": st.lists(st.fixed_dictionaries({"message": MESSAGE}), max_size=2) | JUNK},
    optional={"user": IDS, "model": IDS, "feedback": st.lists(_record(EVENT_FIELDS, EVENT_OPTIONAL), max_size=2) | JUNK})


@st.composite
def other_formats(draw) -> tuple[str, bytes]:
    """A JSON array (maybe cut short), a CSV of records (maybe with stray text), or an
    auto-detected chat-completion log: the other stagers and the mapping path."""
    kind = draw(st.sampled_from(["json", "csv", "openai"]))
    if kind == "json":
        text = json.dumps(draw(st.lists(INTERACTION | EVENT | JUNK, max_size=6)))
        return "a.json", (text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text).encode()
    if kind == "openai":
        recs = draw(st.lists(OPENAI_LOG, min_size=1, max_size=6))
        return "a.jsonl", "".join(json.dumps(r) + "\n" for r in recs).encode()
    recs = draw(st.lists(INTERACTION | EVENT, max_size=6))
    cols = sorted({k for r in recs for k in r}) or ["interaction_id"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in recs:
        w.writerow([json.dumps(r[c]) if isinstance(r.get(c), list | dict) else r.get(c, "") for c in cols])
    return "a.csv", (buf.getvalue() + draw(st.text(max_size=20))).encode("utf-8", "surrogatepass")


@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(file=other_formats())
def test_other_formats_and_mappings_never_crash_ingest_or_the_store(file):
    tmp = Path(tempfile.mkdtemp(dir=STORE))
    db = str(STORE / "s.duckdb")
    try:
        (tmp / file[0]).write_bytes(file[1])
        before = _counts(db) if Path(db).exists() else (0, 0, 0)
        s = ingest_paths([tmp / file[0]], db=db)
        assert s["files"][0]["status"] in ("ingested", "skipped"), s["files"]
        after = _counts(db)
        assert tuple(a - b for a, b in zip(after, before, strict=True)) == \
            (s["interactions"], s["feedback"], s["quarantined"])
        con = duckdb.connect(db, read_only=True)
        try:
            assert check_integrity(con) == []
        finally:
            con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
