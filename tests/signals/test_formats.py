"""Importers for other tools' exports (conf/source/*.yaml), on fixtures written from each tool's
documented format, awkward cases included: missing outputs, nested spans and observations,
several scores on one trace, unicode, lines of the wrong shape.

Docs the fixtures follow (as of 2025-11):
- Langfuse public API v1 (api.reference.langfuse.com): Trace {id, timestamp, userId, sessionId,
  input, output, observations, scores}, Observation {id, traceId, type, startTime, model, input,
  output, parentObservationId, level}, Score {id, traceId, observationId, name, value,
  stringValue, dataType NUMERIC|BOOLEAN|CATEGORICAL|CORRECTION, timestamp};
- LangSmith docs.langchain.com/langsmith run-data-format and feedback-data-format: Run {id,
  run_type, start_time, inputs, outputs, error, trace_id, parent_run_id, session_id,
  extra.metadata}, Feedback {id, created_at, run_id, key, score, value, comment, correction,
  feedback_source};
- OpenTelemetry semantic conventions for GenAI 1.37-1.38 (OTLP/JSON encoding, opentelemetry-proto
  1.x): gen_ai.operation.name, gen_ai.input.messages / gen_ai.output.messages (parts),
  gen_ai.system_instructions, gen_ai.conversation.id, gen_ai.evaluation.result events
  (gen_ai.evaluation.name, .score.value, .score.label, .explanation); 1.28-1.36
  gen_ai.*.message and gen_ai.choice events;
- OpenAI fine-tuning guides (platform.openai.com/docs/guides/supervised-fine-tuning and
  direct-preference-optimization): {"messages"}; {"input": {"messages"}, "preferred_output",
  "non_preferred_output"};
- TRL 1.16 dataset formats (huggingface.co/docs/trl/dataset_formats): conversational SFT
  {"messages"}, preference {"prompt", "chosen", "rejected"}, unpaired {"prompt", "completion", "label"}.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from signals.sources import get_path, load_mapping
from tests.signals.conftest import write_jsonl

FIX = Path(__file__).resolve().parents[1] / "data" / "formats"


def _rows(db, sql):
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _quarantine(db):
    return {(row, field) for row, field in _rows(db, "SELECT source_row, field FROM quarantine")}


def test_langfuse(cli, stats, db):
    assert cli("ingest", FIX / "langfuse.jsonl", "--source", "langfuse")[0] == 0
    s = stats()
    # interactions: trace tr-1 (has output), generations obs-1 and obs-11 (nested in tr-2 under a span);
    # not: SPAN observations, the container trace tr-2, obs-2 (no output)
    assert s["interactions"] == 3
    assert s["feedback"] == {"accept": 1, "edit": 1, "reject": 1, "rate": 1, "choose": 0}
    assert _quarantine(db) == {(4, "output"), (5, "value"), (8, "name"), (9, None)}
    got = {r[0]: r[1:] for r in _rows(db, "SELECT interaction_id, user_id, session_id, model_id, completion, prompt FROM interactions")}
    assert got["langfuse-obs-1"][:4] == ("u-1", "s-1", "gpt-4o-mini", "Dans « Mes documents »."), "user from its trace line"
    assert got["langfuse-obs-11"][:4] == ("u-2", "s-2", "claude-3-5-haiku", "Un émoji 😀."), "user from the nesting trace"
    assert json.loads(got["langfuse-obs-1"][4])[0] == {"role": "system", "content": "Be brief."}
    fb = {r[0]: r[1:] for r in _rows(db, "SELECT event_id, interaction_id, kind, score, edited_text FROM feedback")}
    assert fb["langfuse-score-sc-2"] == ("langfuse-tr-1", "rate", 4.0, None), "a trace-level score lands on the trace"
    assert fb["langfuse-score-sc-10"][:2] == ("langfuse-obs-11", "reject")
    assert fb["langfuse-score-sc-11"][1:] == ("edit", None, "Un émoji souriant 😀.")


def test_langfuse_score_rules_come_from_params(cli, stats, db, tmp_path):
    """A copy of the mapping with other score names: 'hallucination' becomes a rating."""
    import yaml

    m = yaml.safe_load((Path(load_mapping("langfuse")["_file"])).read_text())
    m["params"]["scores"]["hallucination"] = "rate"
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(m))
    assert cli("ingest", FIX / "langfuse.jsonl", "--source", tmp_path / "mine.yaml")[0] == 0
    assert stats()["feedback"]["rate"] == 2
    assert (8, "name") not in _quarantine(db)


def test_otel_genai(cli, stats, db):
    assert cli("ingest", FIX / "otel-genai.jsonl", "--source", "otel-genai")[0] == 0
    s = stats()
    # the agent span (invoke_agent) is skipped; its nested chat span, and two spans of a line with two resources
    assert s["interactions"] == 3
    assert s["feedback"] == {"accept": 1, "edit": 0, "reject": 0, "rate": 1, "choose": 0}
    assert _quarantine(db) == {(2, "resourceSpans"), (3, None), (4, "gen_ai.output.messages")}
    detail = _rows(db, "SELECT detail FROM quarantine WHERE source_row = 4")[0][0]
    assert "status ERROR: rate limited" in detail
    got = {r[0]: r[1:] for r in _rows(db, "SELECT interaction_id, user_id, session_id, app, model_id, prompt, completion, ts FROM interactions")}
    chat = got["otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b175"]
    assert chat[:4] == ("u-7", "conv-1", "support-bot", "gpt-4o-2024-08-06")
    assert json.loads(chat[4]) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "天気は？"}]
    assert chat[5] == "晴れです。"
    assert chat[6].isoformat().startswith("2025-11-03T10:00:00.5")
    assert got["otel-t1-s1"][2] == "svc-a" and got["otel-t2-s2"][2] == "svc-b", "each span keeps its own resource"
    assert got["otel-t2-s2"][5] == "B", "older gen_ai.choice event"


def test_langsmith(cli, stats, db):
    assert cli("ingest", FIX / "langsmith.jsonl", "--source", "langsmith")[0] == 0
    s = stats()
    assert s["interactions"] == 2          # the root chain run and its llm run; not the retriever
    assert s["feedback"] == {"accept": 1, "edit": 1, "reject": 0, "rate": 1, "choose": 0}
    assert _quarantine(db) == {(4, "completion"), (8, "event_id")}
    llm = _rows(db, "SELECT user_id, session_id, model_id, prompt FROM interactions WHERE interaction_id = 'langsmith-r-llm'")[0]
    assert llm[:3] == ("u-9", "th-1", "gpt-4o-mini")
    assert [m["role"] for m in json.loads(llm[3])] == ["system", "user"]
    assert _rows(db, "SELECT edited_text FROM feedback WHERE kind = 'edit'") == [("Su pedido llegará mañana 🚚.",)]


def test_openai_fine_tuning_formats(cli, stats, db, tmp_path):
    sft = [{"messages": [{"role": "system", "content": "Marv is sarcastic."}, {"role": "user", "content": "Capital of France?"},
                         {"role": "assistant", "content": "Paris, as if everyone doesn't know.", "weight": 1}]},
           {"messages": [{"role": "user", "content": "ping"}]},                        # no answer: quarantined
           {"messages": [{"role": "user", "content": [{"type": "text", "text": "多段"}]}, {"role": "assistant", "content": "はい"}]}]
    pref = [{"input": {"messages": [{"role": "user", "content": "Hello"}], "tools": [], "parallel_tool_calls": True},
             "preferred_output": [{"role": "assistant", "content": "Hi! How can I help?"}],
             "non_preferred_output": [{"role": "assistant", "content": "What."}]},
            {"input": {"messages": [{"role": "user", "content": "x"}]}, "preferred_output": [{"role": "assistant", "content": "y"}]}]
    write_jsonl(tmp_path / "sft.jsonl", sft)
    write_jsonl(tmp_path / "dpo.jsonl", pref)
    assert cli("ingest", tmp_path / "sft.jsonl", "--source", "openai-sft")[0] == 0
    assert cli("ingest", tmp_path / "dpo.jsonl", "--source", "openai-pref")[0] == 0
    s = stats()
    assert s["interactions"] == 2 + 2 and s["feedback"]["accept"] == 2 and s["feedback"]["choose"] == 1
    assert _quarantine(db) == {(2, "prompt"), (2, "interaction_id")}   # no answer; no non_preferred_output
    assert ("多段",) in _rows(db, "SELECT prompt->>'$[0].content' FROM interactions")


def test_trl_kto_parquet(cli, stats, db, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": [{"role": "user", "content": "q1"}], "completion": [{"role": "assistant", "content": "good"}], "label": True},
            {"prompt": [{"role": "user", "content": "q2"}], "completion": [{"role": "assistant", "content": "bad"}], "label": False},
            {"prompt": "q3", "completion": " plain", "label": None}]
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "kto.parquet")
    write_jsonl(tmp_path / "more.jsonl", rows[2:])
    assert cli("ingest", tmp_path / "kto.parquet", tmp_path / "more.jsonl", "--source", "trl-kto")[0] == 0
    s = stats()
    assert s["interactions"] == 2 and (s["feedback"]["accept"], s["feedback"]["reject"]) == (1, 1)
    assert _quarantine(db) == {(1, "event_id")}          # label null


def test_a_cut_parquet_file_is_corrupt_and_the_next_is_read(cli, stats, db, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]),
                   tmp_path / "b.parquet")
    (tmp_path / "a.parquet").write_bytes((tmp_path / "b.parquet").read_bytes()[:40])
    assert cli("ingest", tmp_path, "--source", "trl-sft")[0] == 0
    assert stats()["interactions"] == 1
    assert _rows(db, "SELECT reason, source_path LIKE '%a.parquet' FROM quarantine") == [("corrupt_file", True)]


def test_sql_mapping_is_checked_at_load(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsql: 'SELECT 1 AS line; DROP TABLE interactions'\n")
    with pytest.raises(ValueError, match="one SELECT"):
        load_mapping(str(bad))
    bad.write_text("name: bad\nsql: ['SELECT line FROM src', 'DELETE FROM interactions']\n")
    with pytest.raises(ValueError, match=r"sql\[1\]"):
        load_mapping(str(bad))


def test_sql_mapping_stages_and_params(cli, stats, tmp_path):
    """The extension itself: stages materialized in order, params bound, markers quarantined."""
    m = tmp_path / "tiny.yaml"
    m.write_text("""name: tiny
params: {app: widget}
sql:
  - SELECT ln, json_extract_string(line, '$.q') AS q, json_extract_string(line, '$.a') AS a FROM src WHERE json_valid(line)
  - |
    SELECT CASE WHEN a IS NULL THEN reject(ln, 'a', 'no answer', q)
      ELSE json_object('interaction_id', 'tiny-' || ln, 'ts', 0, 'app', getvariable('source_params') ->> '$.app',
                       'prompt', q, 'completion', a, '_source_row', ln) END::VARCHAR AS line
    FROM stage1
""")
    write_jsonl(tmp_path / "t.jsonl", [{"q": "ça va ?", "a": "oui"}, {"q": "x"}])
    assert cli("ingest", tmp_path / "t.jsonl", "--source", m)[0] == 0
    s = stats()
    assert s["interactions"] == 1 and s["quarantine"] == {"mapping_error": 1}


def test_path_slices():
    rec = {"m": [1, 2, 3]}
    assert get_path(rec, "$.m[-1]") == 3 and get_path(rec, "$.m[:-1]") == [1, 2] and get_path(rec, "$.m[1:]") == [2, 3]
    assert get_path(rec, "$.m[-4]") is not None and get_path(rec, "$.m[5]") is get_path(rec, "$.x")


def test_a_duckdb_error_inside_a_sql_mapping_is_a_mapping_error(cli, db, tmp_path):
    """A value the mapping did not expect makes DuckDB raise (here a cast): the file is recorded as
    mapping_error (no row; the mapping and DuckDB's message named), nothing of it is stored, the
    next file is read; the same mapping skips the file next time, a fixed one reads it."""
    from signals.integrity import check_integrity

    sql = """SELECT json_object('interaction_id', line ->> '$.k', 'ts', 0, 'prompt', 'q', 'completion', 'a',
                 'metadata', json_object('n', CAST(line ->> '$.n' AS INTEGER)), '_source_row', ln)::VARCHAR AS line FROM src"""
    m = tmp_path / "casts.yaml"
    m.write_text(yaml_dump({"name": "casts", "sql": sql}))
    write_jsonl(tmp_path / "a.jsonl", [{"k": "a1", "n": 1}, {"k": "a2", "n": "not a number"}])
    write_jsonl(tmp_path / "b.jsonl", [{"k": "b1", "n": 2}])
    code, out = cli("ingest", tmp_path / "a.jsonl", tmp_path / "b.jsonl", "--source", m, "--json", json_out=True)
    assert code == 0
    assert [f["status"] for f in out["files"]] == ["mapping_failed", "ingested"] and out["failed_mapping_files"] == 1
    assert out["interactions"] == 1 and out["quarantine"] == {"mapping_error": 1}
    [(path, row, reason, detail)] = _rows(db, "SELECT source_path, source_row, reason, detail FROM quarantine")
    assert path == str(tmp_path / "a.jsonl") and row is None and reason == "mapping_error"
    assert "source mapping casts" in detail and str(m) in detail and "ConversionException" in detail and "not a number" in detail
    con = duckdb.connect(db, read_only=True)
    try:
        assert check_integrity(con) == []
    finally:
        con.close()
    again = cli("ingest", tmp_path / "a.jsonl", "--source", m, "--json", json_out=True)[1]
    assert again["skipped_files"] == 1 and again["quarantined"] == 0
    m.write_text(yaml_dump({"name": "casts", "sql": sql.replace("CAST(", "TRY_CAST(")}))
    fixed = cli("ingest", tmp_path / "a.jsonl", "--source", m, "--json", json_out=True)[1]
    assert fixed["files"][0]["status"] == "ingested" and fixed["interactions"] == 2


def test_malformed_json_a_sql_mapping_parses_unguarded_is_a_mapping_error_not_a_corrupt_file(cli, db, tmp_path):
    m = tmp_path / "bare.yaml"
    m.write_text(yaml_dump({"name": "bare", "sql": "SELECT json_object('interaction_id', json_extract_string(line, '$.k'), "
                            "'ts', 0, 'prompt', 'q', 'completion', 'a', '_source_row', ln)::VARCHAR AS line FROM src"}))
    (tmp_path / "a.jsonl").write_text('{"k": "a1"}\nnot json\n')
    code, out = cli("ingest", tmp_path / "a.jsonl", "--source", m, "--json", json_out=True)
    assert code == 0 and out["files"][0]["status"] == "mapping_failed" and out["quarantine"] == {"mapping_error": 1}
    [(detail,)] = _rows(db, "SELECT detail FROM quarantine")
    assert "source mapping bare" in detail and "InvalidInputException" in detail and "JSON" in detail


def yaml_dump(obj) -> str:
    import yaml

    return yaml.safe_dump(obj)


@pytest.mark.parametrize(("source", "fixture"), [("langfuse", "langfuse.jsonl"), ("otel-genai", "otel-genai.jsonl"),
                                                 ("otel-genai", "hostile")])
def test_a_chunked_mapping_read_in_pieces_stores_what_one_piece_does(tmp_path, monkeypatch, source, fixture):
    """A `chunked` mapping reads a file a piece at a time (signals.ingest.CHUNK_BYTES): with pieces
    of a line or two, the same records, quarantine rows and line numbers as the file read whole;
    a conflict's raw text is then the record rebuilt, and the cross-line lookup (a Langfuse
    trace's user for its generations) still sees the whole file."""
    import signals.ingest as ingest

    path = FIX / fixture
    if fixture == "hostile":            # the OTel fixture, and its first span again with another answer
        path = tmp_path / "hostile.jsonl"
        first = (FIX / "otel-genai.jsonl").read_text().splitlines()[0]
        path.write_text((FIX / "otel-genai.jsonl").read_text() + first.replace("晴れです。", "雨です。") + "\n\n")

    def ingested(db):
        ingest.ingest_paths([path], db=db, source=source)
        return [_rows(db, f"SELECT * EXCLUDE (ingest_id) FROM {t} ORDER BY ALL") for t in ("interactions", "feedback")] + [
            _rows(db, "SELECT source_row, field, reason, detail FROM quarantine ORDER BY ALL")]

    whole = ingested(str(tmp_path / "whole.duckdb"))
    monkeypatch.setattr(ingest, "CHUNK_BYTES", 400)
    assert len(list(ingest._line_pieces(path, 10**6, ingest.CHUNK_BYTES, []))) >= 3
    pieces = ingested(str(tmp_path / "pieces.duckdb"))
    assert pieces == whole and whole[0]
    if fixture == "hostile":
        [(raw,)] = _rows(str(tmp_path / "pieces.duckdb"), "SELECT raw FROM quarantine WHERE reason = 'conflict'")
        assert json.loads(raw)["completion"] == "雨です。" and json.loads(raw)["_source_row"] == 6


LINES_SQL = ("SELECT CASE WHEN json_valid(line) THEN json_object('interaction_id', line ->> '$.k', 'ts', 0, 'prompt', 'q', "
             "'completion', 'a', '_source_row', ln) ELSE not_json(ln, line) END::VARCHAR AS line FROM src")
HOSTILE_LINES = (b'{"k": "a"}\r\n{"k": "b"}\n{"k": "\xff"}\n\n{"k": "c", "pad": "' + b"x" * 200 + b'"}\n'
                 b'{"k": "d",\r"x": 1}\n{"k": "e"}')


@pytest.mark.parametrize("chunk", [None, 16])
@pytest.mark.parametrize("gz", [False, True])
def test_a_chunked_mapping_reads_hostile_lines_as_the_native_ingest_does(tmp_path, monkeypatch, chunk, gz):
    """A SQL mapping's lines are read by Python into Arrow (signals.ingest._line_pieces): CRLF line
    ends, a blank line and a last line without a line end are fine; a line of invalid UTF-8, one
    over max_record_chars and one with a raw carriage return are quarantined with their line
    numbers, as in a native file, whether the file is read whole, in pieces or gzipped."""
    import gzip

    import signals.ingest as ingest

    if chunk:
        monkeypatch.setattr(ingest, "CHUNK_BYTES", chunk)
    m = tmp_path / "lines.yaml"
    m.write_text(yaml_dump({"name": "lines", "chunked": True, "sql": LINES_SQL}))
    path = tmp_path / ("lines.jsonl.gz" if gz else "lines.jsonl")
    path.write_bytes(gzip.compress(HOSTILE_LINES) if gz else HOSTILE_LINES)
    db = str(tmp_path / "store.duckdb")
    s = ingest.ingest_paths([path], db=db, source=str(m), max_record_chars=100)
    assert s["files"][0]["status"] == "ingested", s
    assert _rows(db, "SELECT interaction_id, source_row FROM interactions ORDER BY 1") == [("a", 1), ("b", 2), ("e", 7)]
    assert _rows(db, "SELECT source_row, reason FROM quarantine ORDER BY 1") == [
        (3, "invalid_utf8"), (5, "too_large"), (6, "malformed_json")]


def test_a_truncated_gz_read_by_a_chunked_mapping_is_corrupt(tmp_path, monkeypatch):
    import gzip

    import signals.ingest as ingest

    monkeypatch.setattr(ingest, "CHUNK_BYTES", 64)
    m = tmp_path / "lines.yaml"
    m.write_text(yaml_dump({"name": "lines", "chunked": True, "sql": LINES_SQL}))
    whole = gzip.compress(b"".join(b'{"k": "%d"}\n' % i for i in range(2000)))
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    s = ingest.ingest_paths([tmp_path / "cut.jsonl.gz"], db=str(tmp_path / "store.duckdb"), source=str(m))
    assert s["files"][0]["status"] == "corrupt" and s["interactions"] == 0 and s["quarantine"] == {"corrupt_file": 1}


def test_a_chunked_mapping_that_reads_src_twice_is_told_so(tmp_path):
    import signals.ingest as ingest

    m = tmp_path / "twice.yaml"
    m.write_text(yaml_dump({"name": "twice", "chunked": True,
                            "sql": f"SELECT * FROM ({LINES_SQL}) UNION ALL SELECT * FROM ({LINES_SQL})"}))
    (tmp_path / "a.jsonl").write_text('{"k": "a"}\n')
    db = str(tmp_path / "store.duckdb")
    s = ingest.ingest_paths([tmp_path / "a.jsonl"], db=db, source=str(m))
    assert s["files"][0]["status"] == "mapping_failed"
    [(detail,)] = _rows(db, "SELECT detail FROM quarantine")
    assert "reads view src more than once" in detail and "chunked" in detail
