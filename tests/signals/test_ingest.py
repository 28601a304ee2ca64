"""Ingest: native schema, every quarantine reason, formats, timestamps, pending, idempotency."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import duckdb
import pytest

from signals.ingest import ingest_paths
from tests.signals.conftest import DATA, event, interaction, write_jsonl


def rows(db, q, params=()):
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(q, list(params)).fetchall()
    finally:
        con.close()


def test_readme_example_has_every_kind_and_all_of_it_is_stored(cli, stats):
    code, out = cli("ingest", DATA / "native_example.jsonl")
    assert code == 0, out
    s = stats()
    assert s["interactions"] == 6
    assert s["feedback"] == {"accept": 1, "edit": 1, "reject": 1, "rate": 1, "choose": 1}
    assert s["pending"] == 0 and s["quarantined"] == 0 and s["quarantine"] == {}
    assert s["users"] == 4
    assert s["sources"]["native"]["files"] == 1


def test_two_streams_and_nested_feedback_land_in_the_same_tables(tmp_path, db):
    write_jsonl(tmp_path / "i.jsonl", [interaction("a", feedback=[{"kind": "accept"}, {"kind": "edit", "edited_text": "better"}]),
                                       interaction("b", prompt="plain string prompt")])
    write_jsonl(tmp_path / "f.jsonl", [event("e1", "b", "rate", score=3.5), event("e2", "b", "reject")])
    s = ingest_paths([tmp_path], db=db)
    assert (s["interactions"], s["feedback"], s["quarantined"]) == (2, 4, 0)
    assert rows(db, "SELECT prompt FROM interactions WHERE interaction_id = 'b'")[0][0] == \
        '[{"role":"user","content":"plain string prompt"}]'
    nested = rows(db, "SELECT event_id, kind, edited_text, user_id FROM feedback WHERE interaction_id = 'a' ORDER BY 1")
    assert nested == [("a/fb1", "accept", None, "u1"), ("a/fb2", "edit", "better", "u1")]
    assert rows(db, "SELECT score FROM feedback WHERE event_id = 'e1'") == [(3.5,)]


BAD = {
    "malformed_json": ('{"interaction_id": "x", "ts": ', None),
    "missing_field": (interaction("x", completion=...), "completion"),
    "wrong_type": (interaction("x", completion=["not", "text"]), "completion"),
    "unknown_kind": (event("e", "good", "love"), "kind"),
    "edit_without_text": (event("e", "good", "edit"), "edited_text"),
    "rate_without_score": (event("e", "good", "rate"), "score"),
    "choose_without_other": (event("e", "good", "choose"), "other_interaction_id"),
    "invalid_timestamp": (interaction("x", ts="yesterday-ish"), "ts"),
    "too_large": (interaction("x", completion="y" * 5000), None),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_a_bad_record_is_quarantined_with_row_and_reason_and_good_ones_are_kept(tmp_path, db, reason):
    bad, field = BAD[reason]
    path = write_jsonl(tmp_path / "mixed.jsonl", [interaction("good"), bad, interaction("good2")])
    s = ingest_paths([path], db=db, max_record_chars=4000)
    assert s["interactions"] == 2, s
    assert s["quarantine"] == {reason: 1}
    [(src, row, qfield, qreason, detail, raw)] = rows(db, "SELECT source_path, source_row, field, reason, detail, raw FROM quarantine")
    assert (src, row, qfield, qreason) == (str(path), 2, field, reason)
    assert detail and raw == (bad if isinstance(bad, str) else json.dumps(bad))


def test_wrong_types_name_the_field(tmp_path, db):
    path = write_jsonl(tmp_path / "t.jsonl", [
        interaction("a", user_id={"x": 1}), interaction("b", prompt=[{"role": "user"}]),
        interaction("c", metadata="not an object"), event("e", "z", "rate", score="lots"), [1, 2]])
    ingest_paths([path], db=db)
    got = rows(db, "SELECT source_row, reason, field FROM quarantine ORDER BY source_row")
    assert got == [(1, "wrong_type", "user_id"), (2, "wrong_type", "prompt"), (3, "wrong_type", "metadata"),
                   (4, "wrong_type", "score"), (5, "wrong_type", None)]


def test_prompt_messages_must_all_be_objects_with_string_role_and_content(tmp_path, db):
    ok = [{"role": "user", "content": "x", "name": "n"}]       # extra keys are fine
    bad = [[{"role": "user", "content": "x"}, 3], [{"role": "user", "content": "x"}, None],
           [{"role": 1, "content": "x"}], [{"role": "user", "content": {"a": 1}}], []]
    path = write_jsonl(tmp_path / "p.jsonl", [interaction("ok", prompt=ok)] +
                       [interaction(f"b{i}", prompt=p) for i, p in enumerate(bad)])
    s = ingest_paths([path], db=db)
    assert s["interactions"] == 1 and s["quarantine"] == {"wrong_type": len(bad)}
    assert rows(db, "SELECT DISTINCT field FROM quarantine") == [("prompt",)]


def test_invalid_utf8_keeps_line_numbers_of_the_lines_after_it(tmp_path, db):
    path = tmp_path / "enc.jsonl"
    good = [json.dumps(interaction(f"i{n}")).encode() for n in range(3)]
    path.write_bytes(good[0] + b"\n" + b'{"interaction_id": "\xff\xfe"}\n' + good[1] + b"\n\n" + good[2] + b"\n")
    s = ingest_paths([path], db=db)
    assert s["interactions"] == 3 and s["quarantine"] == {"invalid_utf8": 1}
    assert rows(db, "SELECT interaction_id, source_row FROM interactions ORDER BY 1") == [("i0", 1), ("i1", 3), ("i2", 5)]
    assert rows(db, "SELECT source_row FROM quarantine") == [(2,)]


def test_nested_feedback_errors_are_quarantined_alone(tmp_path, db):
    path = write_jsonl(tmp_path / "n.jsonl", [interaction("a", feedback=[{"kind": "accept"}, {"kind": "rate"}])])
    s = ingest_paths([path], db=db)
    assert (s["interactions"], s["feedback"], s["quarantine"]) == (1, 1, {"rate_without_score": 1})
    assert rows(db, "SELECT field, raw FROM quarantine") == [("feedback[1].score", '{"kind":"rate"}')]


def test_conflict_within_a_file_and_against_the_store(tmp_path, db):
    write_jsonl(tmp_path / "1.jsonl", [interaction("a"), interaction("a"), interaction("a", completion="other")])
    s = ingest_paths([tmp_path / "1.jsonl"], db=db)
    assert (s["interactions"], s["duplicates"], s["quarantine"]) == (1, 1, {"conflict": 1})
    write_jsonl(tmp_path / "2.jsonl", [interaction("a", completion="third"), event("e1", "a"), event("e1", "a", "reject")])
    s = ingest_paths([tmp_path / "2.jsonl"], db=db)
    assert (s["interactions"], s["feedback"], s["quarantine"]) == (0, 1, {"conflict": 2})
    assert rows(db, "SELECT completion FROM interactions") == [("answer a",)]
    detail = rows(db, "SELECT detail FROM quarantine WHERE source_path LIKE '%2.jsonl' AND source_row = 1")[0][0]
    assert "stored from ingest 1 row 1" in detail


def test_same_file_twice_changes_nothing_and_same_event_elsewhere_is_not_stored_twice(tmp_path, db, stats, cli):
    recs = [interaction("a", feedback=[{"kind": "accept"}]), event("e1", "a", "reject"), "{broken"]
    write_jsonl(tmp_path / "1.jsonl", recs)
    ingest_paths([tmp_path / "1.jsonl"], db=db)
    before = stats()
    again = ingest_paths([tmp_path / "1.jsonl"], db=db)
    assert again["skipped_files"] == 1 and again["records"] == 0
    assert stats() == before
    write_jsonl(tmp_path / "copy" / "2.jsonl", recs[:2] + [interaction("b")])   # other bytes, same events
    s = ingest_paths([tmp_path / "copy"], db=db)
    assert (s["interactions"], s["feedback"], s["duplicates"]) == (1, 0, 3)
    after = stats()
    assert after["interactions"] == 2 and sum(after["feedback"].values()) == 2 and after["quarantined"] == 1


def test_feedback_before_its_interaction_is_pending_then_joins(tmp_path, db, stats):
    write_jsonl(tmp_path / "f.jsonl", [event("e1", "late", "edit", edited_text="fixed")])
    assert ingest_paths([tmp_path / "f.jsonl"], db=db)["pending"] == 1
    write_jsonl(tmp_path / "i.jsonl", [interaction("late")])
    assert ingest_paths([tmp_path / "i.jsonl"], db=db)["pending"] == 0
    assert rows(db, "SELECT count(*) FROM feedback f JOIN interactions i USING (interaction_id)") == [(1,)]
    assert stats()["pending"] == 0


def test_timestamps_iso_offsets_epoch_seconds_and_millis_are_utc(tmp_path, db):
    want = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    path = write_jsonl(tmp_path / "ts.jsonl", [
        interaction("iso", ts="2024-05-01T10:00:00+02:00"), interaction("z", ts="2024-05-01T08:00:00Z"),
        interaction("s", ts=int(want.timestamp())), interaction("ms", ts=int(want.timestamp() * 1000)),
        interaction("str_s", ts=str(int(want.timestamp()))), interaction("neg", ts="2024-05-01T03:00:00-05:00")])
    assert ingest_paths([path], db=db)["interactions"] == 6
    got = rows(db, "SELECT DISTINCT ts FROM interactions")
    assert len(got) == 1 and got[0][0] == want


def test_empty_file_is_recorded_and_harmless(tmp_path, db, cli):
    (tmp_path / "empty.jsonl").write_text("")
    code, out = cli("ingest", tmp_path / "empty.jsonl")
    assert code == 0 and "records read       0" in out
    assert rows(db, "SELECT records, interactions FROM ingests") == [(0, 0)]


def test_csv_with_embedded_newlines_and_json_columns(tmp_path, db):
    path = tmp_path / "log.csv"
    path.write_text('interaction_id,ts,user_id,prompt,completion\n'
                    'c1,2024-05-01T10:00:00Z,u1,"a prompt\nwith two lines","an answer,\nwith a comma"\n'
                    'c2,1714550400,u2,"[{""role"": ""user"", ""content"": ""hi""}]",hello\n'
                    'c3,2024-05-01,u3,no completion,\n')
    s = ingest_paths([path], db=db)
    assert s["interactions"] == 2 and s["quarantine"] == {"missing_field": 1}
    assert rows(db, "SELECT completion FROM interactions WHERE interaction_id = 'c1'") == [("an answer,\nwith a comma",)]
    assert rows(db, "SELECT prompt->>'$[0].content' FROM interactions WHERE interaction_id = 'c2'") == [("hi",)]
    assert rows(db, "SELECT source_row FROM quarantine") == [(3,)]


def test_parquet_hive_folder_gzip_and_json_array(tmp_path, db):
    con = duckdb.connect()
    for app in ("chat", "sql"):
        (tmp_path / "pq" / f"app={app}").mkdir(parents=True)
        con.execute(f"COPY (SELECT 'p-{app}' AS interaction_id, TIMESTAMPTZ '2024-05-01 10:00:00+00' AS ts, "
                    "[{'role': 'user', 'content': 'q'}] AS prompt, 'a' AS completion) "
                    f"TO '{tmp_path}/pq/app={app}/part0.parquet' (FORMAT parquet)")
    with gzip.open(tmp_path / "g.jsonl.gz", "wt") as f:
        f.write(json.dumps(interaction("gz")) + "\n")
    (tmp_path / "arr.json").write_text(json.dumps([interaction("j1"), interaction("j2", ts=None)]))
    s = ingest_paths([tmp_path / "pq", tmp_path / "g.jsonl.gz", tmp_path / "arr.json"], db=db)
    assert s["interactions"] == 4 and s["quarantine"] == {"missing_field": 1}
    assert rows(db, "SELECT interaction_id, app FROM interactions WHERE interaction_id LIKE 'p-%' ORDER BY 1") == \
        [("p-chat", "chat"), ("p-sql", "sql")]
    assert rows(db, "SELECT source_row FROM quarantine") == [(2,)]


def test_openai_chat_completion_logs_are_detected(tmp_path, db):
    path = write_jsonl(tmp_path / "oa.jsonl", [
        {"request": {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "user": "u9"},
         "response": {"id": "chatcmpl-1", "created": 1714550400, "model": "gpt-x-0501",
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}}]}},
        {"id": "chatcmpl-2", "created": 1714550401, "model": "gpt-x", "messages": [{"role": "user", "content": "yo"}],
         "choices": [{"message": {"role": "assistant", "content": "hey"}}], "feedback": [{"kind": "accept"}]},
        {"id": "chatcmpl-3", "created": 1714550401, "messages": [], "choices": []}])
    s = ingest_paths([path], db=db)
    assert s["files"][0]["source"] == "openai"
    assert (s["interactions"], s["feedback"]) == (2, 1)
    assert s["quarantine"] == {"mapping_error": 1}
    assert rows(db, "SELECT interaction_id, user_id, model_id, completion FROM interactions ORDER BY 1") == \
        [("chatcmpl-1", "u9", "gpt-x-0501", "hello"), ("chatcmpl-2", None, "gpt-x", "hey")]


def test_cli_strict_exit_codes_and_quarantine_export(tmp_path, cli):
    path = write_jsonl(tmp_path / "q.jsonl", [interaction("a"), "not json"])
    code, out = cli("ingest", path, "--strict")
    assert code == 5 and "malformed_json 1" in out          # 5: quarantined under --strict
    code, out = cli("ingest", tmp_path / "missing.jsonl")
    assert code == 2
    code, out = cli("quarantine", "--reason", "malformed_json", "--export", tmp_path / "q.csv")
    assert code == 0
    exported = (tmp_path / "q.csv").read_text()
    assert "malformed_json" in exported and "not json" in exported
    code, out = cli("quarantine", "--limit", "5")
    assert "q.jsonl:2" in out and "1 of 1 quarantined record(s)" in out


def test_help_is_fast_and_imports_no_torch():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "signals", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "ingest" in r.stdout
    assert "torch" not in r.stderr and "duckdb" not in r.stderr
