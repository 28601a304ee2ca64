"""Hostile input (issue 14, item 4): no file crashes ingest, no record vanishes without a
quarantine row. Each test is one case that failed before the fix."""

from __future__ import annotations

import gzip
import json
import os

import duckdb
import pytest

from signals.ingest import ingest_paths
from signals.integrity import check_integrity
from signals.sources import hh_prompt, hh_turns
from tests.signals.conftest import interaction, write_jsonl


def rows(db, q, params=()):
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(q, list(params)).fetchall()
    finally:
        con.close()


def assert_intact(db):
    con = duckdb.connect(db, read_only=True)
    try:
        assert check_integrity(con) == []
    finally:
        con.close()


@pytest.mark.parametrize("name,twin", [("data[1].jsonl", "data1.jsonl"), ("q?.jsonl", "qx.jsonl"),
                                       ("star*.jsonl", "starry.jsonl")])
def test_file_names_with_glob_characters_are_literal_paths(tmp_path, db, name, twin):
    write_jsonl(tmp_path / name, [interaction("literal")])
    write_jsonl(tmp_path / twin, [interaction("twin")])
    s = ingest_paths([tmp_path / name], db=db)              # the name given is the file read
    assert [f["path"] for f in s["files"]] == [str(tmp_path / name)]
    assert rows(db, "SELECT interaction_id FROM interactions") == [("literal",)]
    s = ingest_paths([tmp_path], db=db)                      # a folder: each file read once, as itself
    assert s["interactions"] == 1 and s["skipped_files"] == 1
    assert rows(db, "SELECT interaction_id, i.path FROM interactions JOIN ingests i USING (ingest_id) ORDER BY 1") == \
        [("literal", str(tmp_path / name)), ("twin", str(tmp_path / twin))]
    assert_intact(db)


def test_a_glob_pattern_still_expands(tmp_path, db):
    write_jsonl(tmp_path / "a1.jsonl", [interaction("a1")])
    write_jsonl(tmp_path / "a2.jsonl", [interaction("a2")])
    assert ingest_paths([str(tmp_path / "a?.jsonl")], db=db)["interactions"] == 2


@pytest.mark.parametrize("gz", [False, True])
def test_a_line_over_duckdbs_buffer_is_quarantined_as_too_large(tmp_path, db, gz):
    text = "".join(json.dumps(r) + "\n" for r in (
        interaction("before"), interaction("huge", completion="x" * (33 << 20)), interaction("after")))  # > 32 MiB
    path = tmp_path / ("huge.jsonl.gz" if gz else "huge.jsonl")
    path.write_bytes(gzip.compress(text.encode(), 1) if gz else text.encode())
    s = ingest_paths([path], db=db)
    assert s["interactions"] == 2 and s["quarantine"] == {"too_large": 1}
    assert rows(db, "SELECT source_row, reason, length(raw) < 20000 FROM quarantine") == [(2, "too_large", True)]
    assert rows(db, "SELECT interaction_id, source_row FROM interactions ORDER BY 2") == [("before", 1), ("after", 3)]
    assert_intact(db)


def test_a_raw_carriage_return_in_a_json_string_quarantines_that_line_only(tmp_path, db):
    path = tmp_path / "cr.jsonl"
    good = [json.dumps(interaction(f"g{i}")).encode() for i in range(3)]
    bad = b'{"interaction_id": "cr", "ts": 0, "prompt": "p", "completion": "x\ry"}'
    path.write_bytes(good[0] + b"\r\n" + bad + b"\r\n" + good[1] + b"\n" + good[2] + b"\n")
    s = ingest_paths([path, write_jsonl(tmp_path / "later.jsonl", [interaction("later")])], db=db)
    assert s["interactions"] == 4 and s["quarantine"] == {"malformed_json": 1}
    assert rows(db, "SELECT source_row FROM quarantine") == [(2,)]
    assert rows(db, "SELECT interaction_id, source_row FROM interactions WHERE interaction_id LIKE 'g%' ORDER BY 1") == \
        [("g0", 1), ("g1", 3), ("g2", 4)]


def test_crlf_files_still_take_the_fast_path(tmp_path, db):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"".join(json.dumps(interaction(f"c{i}")).encode() + b"\r\n" for i in range(3)))
    assert ingest_paths([path], db=db)["interactions"] == 3


def test_a_truncated_gzip_is_recorded_as_corrupt_and_later_files_are_read(tmp_path, db, cli):
    whole = gzip.compress(b"".join(json.dumps(interaction(f"z{i}", completion="w" * 500)).encode() + b"\n"
                                   for i in range(200)))
    (tmp_path / "a.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    write_jsonl(tmp_path / "b.jsonl", [interaction("b")])
    code, out = cli("ingest", tmp_path, "--json", json_out=True)
    assert code == 0
    status = {os.path.basename(f["path"]): f["status"] for f in out["files"]}
    assert status == {"a.jsonl.gz": "corrupt", "b.jsonl": "ingested"}
    assert out["interactions"] == 1 and out["quarantine"] == {"corrupt_file": 1} and out["corrupt_files"] == 1
    [(src, reason, detail)] = rows(db, "SELECT source_path, reason, detail FROM quarantine")
    assert src == str(tmp_path / "a.jsonl.gz") and reason == "corrupt_file" and detail
    assert_intact(db)
    again = ingest_paths([tmp_path], db=db)                   # recorded: the same bytes are not retried
    assert again["skipped_files"] == 2


def test_symlinks_in_a_folder_are_not_followed_unless_asked(tmp_path, db):
    outside = tmp_path / "outside"
    write_jsonl(outside / "secret.jsonl", [interaction("secret")])
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    landing = tmp_path / "landing"
    write_jsonl(landing / "ok.jsonl", [interaction("ok")])
    (landing / "passwd.jsonl").symlink_to(outside / "passwd")
    (landing / "linked_dir").symlink_to(outside, target_is_directory=True)
    s = ingest_paths([landing], db=db)
    assert s["interactions"] == 1 and s["quarantined"] == 0
    assert sorted(f["status"] for f in s["files"]) == ["ingested", "symlink", "symlink"] and s["symlinks_skipped"] == 2
    assert rows(db, "SELECT count(*) FROM quarantine") == [(0,)]
    s = ingest_paths([landing], db=str(tmp_path / "follow.duckdb"), follow_symlinks=True)
    assert s["interactions"] == 2 and s["quarantine"] == {"malformed_json": 1}


def test_hive_folder_names_do_not_override_a_files_own_columns(tmp_path, db):
    con = duckdb.connect()
    (tmp_path / "pq" / "user_id=bob" / "app=web").mkdir(parents=True)
    con.execute(f"COPY (SELECT 'p1' AS interaction_id, TIMESTAMPTZ '2024-05-01 10:00:00+00' AS ts, 'alice' AS user_id, "
                "'q' AS prompt, 'a' AS completion) "
                f"TO '{tmp_path}/pq/user_id=bob/app=web/part0.parquet' (FORMAT parquet)")
    (tmp_path / "csv" / "user_id=bob").mkdir(parents=True)
    (tmp_path / "csv" / "user_id=bob" / "log.csv").write_text(
        "interaction_id,ts,user_id,prompt,completion\nc1,2024-05-01T10:00:00Z,alice,q,a\n")
    s = ingest_paths([tmp_path / "pq", tmp_path / "csv"], db=db)
    assert s["interactions"] == 2
    assert rows(db, "SELECT interaction_id, user_id, app FROM interactions ORDER BY 1") == \
        [("c1", "alice", None), ("p1", "alice", "web")]        # the folder fills only what the file lacks
    from signals.privacy import forget

    con = duckdb.connect(db)
    forget(con, ["alice"])
    assert con.execute("SELECT count(*) FROM interactions").fetchone()[0] == 0
    con.close()


@pytest.mark.parametrize("ts", ["infinity", "-infinity", "10000-01-01T00:00:00Z", "0000-12-31T00:00:00Z",
                                "-0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z",
                                253402300800000, -1, 1e300])
def test_timestamps_outside_the_documented_range_are_quarantined(tmp_path, db, ts, cli):
    path = write_jsonl(tmp_path / "ts.jsonl", [
        interaction("edge_lo", ts="1970-01-01T00:00:00Z"), interaction("edge_hi", ts="2099-12-31T23:59:59Z"),
        interaction("bad", ts=ts), interaction("nested", feedback=[{"kind": "accept", "ts": ts}]),
        {"event_id": "e", "interaction_id": "edge_lo", "ts": ts, "kind": "accept"}])
    s = ingest_paths([path], db=db)
    assert s["interactions"] == 3 and s["feedback"] == 0 and s["quarantine"] == {"invalid_timestamp": 3}
    assert all("1970-01-01" in d and "2100-01-01" in d for (d,) in rows(db, "SELECT detail FROM quarantine"))
    code, out = cli("stats", "--json", json_out=True)
    assert code == 0 and out["first_ts"].startswith("1970-01-01") and out["last_ts"].startswith("2099-12-31")


def test_hh_rlhf_turns_split_only_on_the_upstream_separators():
    text = ("\n\nHuman: What does 'Human:' mean in a transcript?\n\nAssistant: It marks the Human: side;"
            " Assistant: marks mine.")
    assert [t["role"] for t in hh_turns(text)] == ["user", "assistant"]
    # a repeated marker of the same speaker is text of that turn (turns alternate upstream)
    pasted = "\n\nHuman: I was sent this:\n\nHuman: hi there\n\nAssistant: That reads as a greeting."
    turns = hh_turns(pasted)
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[0]["content"] == "I was sent this:\n\nHuman: hi there"


def test_hh_rlhf_a_final_answer_that_contains_a_marker_is_one_turn(tmp_path, cli, stats, db):
    prefix = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: tell me a joke"
    recs = [
        {"chosen": prefix + "\n\nAssistant: Sure.\n\nAssistant: A pun.", "rejected": prefix + "\n\nAssistant: No."},
        {"chosen": prefix + "\n\nAssistant: Ok.", "rejected": prefix + "\n\nAssistant: Fine.\n\nHuman: thanks"},
        {"chosen": "\n\nHuman: Say Human: twice\n\nAssistant: Human: Human:",
         "rejected": "\n\nHuman: Say Human: twice\n\nAssistant: no"},
    ]
    write_jsonl(tmp_path / "hh.jsonl", recs)
    assert cli("ingest", tmp_path / "hh.jsonl", "--source", "hh-rlhf")[0] == 0
    s = stats()
    assert (s["interactions"], s["feedback"]["choose"], s["quarantined"]) == (6, 3, 0)
    got = {c for (c,) in rows(db, "SELECT completion FROM interactions")}
    assert got == {"Sure.\n\nAssistant: A pun.", "No.", "Ok.", "Fine.\n\nHuman: thanks", "Human: Human:", "no"}
    assert [m["role"] for m in hh_prompt(recs[0]["chosen"], recs[0]["rejected"])] == ["user", "assistant", "user"]


def test_hh_rlhf_diverging_dialogues_are_still_a_mapping_error():
    with pytest.raises(ValueError):
        hh_prompt("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
                  "\n\nHuman: a\n\nAssistant: b\n\nHuman: x\n\nAssistant: y")


def test_duplicate_keys_first_occurrence_wins_for_native_and_mapped_records(tmp_path, db):
    native = ('{"interaction_id": "n1", "ts": "2024-05-01T10:00:00Z", "user_id": "first", "user_id": "second", '
              '"prompt": "p", "completion": "c", "completion": 5}')
    write_jsonl(tmp_path / "native.jsonl", [native])
    mapped = ('{"id": "m1", "created": 1714550400, "user": "first", "user": "second", '
              '"messages": [{"role": "user", "content": "hi", "content": 7}], '
              '"choices": [{"message": {"role": "assistant", "content": "yo"}}]}')
    write_jsonl(tmp_path / "openai.jsonl", [mapped])
    s = ingest_paths([tmp_path / "native.jsonl", tmp_path / "openai.jsonl"], db=db)
    assert s["interactions"] == 2 and s["quarantined"] == 0, s
    assert rows(db, "SELECT interaction_id, user_id, completion, prompt->>'$[0].content' FROM interactions ORDER BY 1") == \
        [("m1", "first", "yo", "hi"), ("n1", "first", "c", "p")]


def test_check_integrity_names_what_is_wrong(tmp_path, db):
    ingest_paths([write_jsonl(tmp_path / "a.jsonl", [interaction("a"), interaction("b")])], db=db)
    con = duckdb.connect(db)
    try:
        assert check_integrity(con) == []
        con.execute("UPDATE interactions SET ts = 'infinity' WHERE interaction_id = 'a'")
        con.execute("INSERT INTO feedback (event_id, interaction_id, ts, kind, ingest_id) "
                    "VALUES ('e', 'a', TIMESTAMPTZ '2024-05-01 00:00:00+00', 'edit', 99)")
        con.execute("DELETE FROM interactions WHERE interaction_id = 'b'")
        problems = check_integrity(con)
        assert any("ts outside" in p for p in problems)
        assert any("payload" in p for p in problems)
        assert any("ingest that does not exist" in p for p in problems)
        assert any("ingest 1: 1 rows in interactions, its ingests row records 2" in p for p in problems)
        assert not any("rows in interactions" in p for p in check_integrity(con, exact=False))
    finally:
        con.close()


def test_a_csv_duckdb_cannot_sniff_is_read_row_by_row_not_lost(tmp_path, db):
    path = tmp_path / "odd.csv"
    path.write_bytes(b'interaction_id,ts,prompt,completion\r\na,0,"p\rq",c\r\nb,0,p,c\r\nx\r"stray')
    s = ingest_paths([path], db=db)
    assert s["files"][0]["status"] == "ingested"
    assert s["interactions"] == 2 and s["quarantine"] == {"malformed_csv": 2}
    assert rows(db, "SELECT interaction_id, source_row FROM interactions ORDER BY 1") == [("a", 1), ("b", 2)]
    assert rows(db, "SELECT prompt->>'$[0].content' FROM interactions WHERE interaction_id = 'a'") == [("p\rq",)]
