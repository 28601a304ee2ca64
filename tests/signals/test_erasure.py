"""Erasure that reaches every copy (issue 14): quarantine under any JSON escaping, pending
feedback, editors in snapshot membership, snapshots found from any folder, the judge's
cache, the store file's bytes, the receipt and --verify."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

from signals import erasure, keys, snapshot
from signals.build import build_snapshot
from signals.privacy import forget
from signals.store import open_store
from tests.signals.store_helpers import TinyStore

RECIPE = {"name": "snap", "split": {"eval_fraction": 0.3}}
MARKER = "zq-unique-marker-7731"


def _quarantine(con, raw, user_id=None):
    con.execute("INSERT INTO quarantine (source_path, source_row, reason, raw, user_id, quarantined_at) "
                "VALUES ('x.jsonl', 1, 'test', ?, ?, now())", [raw, user_id])


def test_quarantine_is_matched_by_the_parsed_id_under_every_json_escaping(tmp_path):
    con = open_store(tmp_path / "s.duckdb")
    con.execute("INSERT INTO interactions (interaction_id, ts, user_id, prompt, completion) "
                "VALUES ('j1', now(), 'josé', '[]', 'a')")
    gone = [
        '{"interaction_id": "q1", "user_id": "jos\\u00e9", "ts": "bad"}',        # parses, \u escape
        '{"interaction_id": "q2", "user_id": "jos\\u00E9", "broken',              # does not parse, upper-case hex
        '{"user\\u005fid": "josé", "x": ',                                        # escaped key
        '{"interaction_id": "q3", "feedback": [{"user_id": "josé"}], "ts": 1}',   # nested
        '{"event_id": "e9", "interaction_id": "j1", "kind": "bogus"}',           # about her interaction, no user_id
        '{"interaction_id": "q4", "user_id": "o\\"brien", "oops',                 # escaped quote
        '{"interaction_id": "q5", "user_id": "back\\\\slash"}',                   # escaped backslash
        '{"interaction_id": "q6", "user_id": 12345, "ts": []}',                   # not a string
    ]
    kept = ['{"interaction_id": "k1", "user_id": "josée", "x": 1}', '{"user_id": "bob", "completion": "josé"}',
            '{"user_id": "123456", "oops', 'not json at all josé']
    for raw in gone + kept:
        _quarantine(con, raw)
    _quarantine(con, "{}", user_id="josé")
    r = forget(con, ["josé", 'o"brien', "back\\slash", "12345"])
    assert r["quarantine"] == len(gone) + 1
    assert sorted(x for (x,) in con.execute("SELECT raw FROM quarantine").fetchall()) == sorted(kept)
    con.close()


def test_pending_feedback_and_the_users_edits_on_others_are_deleted(tmp_path):
    s = TinyStore(tmp_path / "s.duckdb")
    a1 = s.interaction("alice's question", "answer", user="alice")
    b1 = s.interaction("bob's question", "answer", user="bob")
    s.feedback(a1, "accept")                                              # no user_id: hers by the interaction
    s.feedback(b1, "edit", edited_text=f"alice's words {MARKER}", event_id="ed")
    s.con.execute("UPDATE feedback SET user_id = 'alice' WHERE event_id = 'ed'")
    s.feedback("never-arrived", "reject", event_id="pend")
    s.con.execute("UPDATE feedback SET user_id = 'alice' WHERE event_id = 'pend'")
    r = forget(s.con, ["alice"])
    assert (r["interactions"], r["feedback"], r["pending"]) == (1, 3, 1)
    assert s.con.execute("SELECT count(*) FROM feedback").fetchone()[0] == 0
    assert s.con.execute("SELECT interaction_id FROM interactions").fetchall() == [(b1,)]
    s.close()


def _editor_store(path) -> tuple[str, str]:
    s = TinyStore(path)
    for i in range(6):
        s.shown(f"bob asks {i}", f"answer {i}", "accept", user="bob")
    b = s.interaction("bob asks for a fix", "a weak answer", user="bob")
    s.feedback(b, "edit", edited_text=f"ed's much better answer {MARKER}", event_id="ed-edit")
    s.con.execute("UPDATE feedback SET user_id = 'ed' WHERE event_id = 'ed-edit'")
    s.close()
    return s.path, b


def test_forgetting_the_author_of_an_edit_revokes_the_snapshot(tmp_path):
    db, b = _editor_store(tmp_path / "s.duckdb")
    snap = build_snapshot(RECIPE, db, tmp_path / "snaps")
    con = open_store(db)
    key = keys.install(con)
    hashes = {h for (h,) in con.execute("SELECT user_hash FROM snapshot_members WHERE interaction_id = ?", [b]).fetchall()}
    assert hashes == {keys.keyed(key, "bob"), keys.keyed(key, "ed")}
    assert con.execute("SELECT count(*) FROM snapshot_members WHERE user_id IS NOT NULL").fetchone()[0] == 0
    r = forget(con, ["ed"])
    con.close()
    assert r["snapshots"] == [snap.version] and r["feedback"] == 1
    assert (snap.path / snapshot.REVOKED_MARKER).is_file() and not (snap.path / "sft").exists()


def test_forget_from_another_folder_finds_relative_and_absolute_snapshot_paths(tmp_path, monkeypatch):
    (tmp_path / "repo").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    db, _ = _editor_store(Path("data") / "s.duckdb")
    new = build_snapshot(RECIPE, db, "data/snapshots")                     # a relative root: stored absolute
    old = build_snapshot({**RECIPE, "name": "old"}, db, "data/snapshots")
    con = open_store(db)
    assert Path(con.execute("SELECT path FROM snapshots WHERE version = ?", [new.version]).fetchone()[0]).is_absolute()
    con.execute("UPDATE snapshots SET path = ? WHERE version = ?",        # a row written before paths were resolved
                [f"data/snapshots/{old.version}", old.version])
    con.close()
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = erasure.forget(tmp_path / "repo" / "data" / "s.duckdb", ["bob"])
    assert sorted(r["snapshots"]) == sorted([new.version, old.version])
    for v in (new.version, old.version):
        folder = tmp_path / "repo" / "data" / "snapshots" / v
        assert (folder / snapshot.REVOKED_MARKER).is_file()
        assert not list(folder.glob("*/*.parquet"))
    assert all(f["path"] and f["purged"] for f in r["snapshot_files"])


def test_judgments_of_the_users_interactions_and_unattributed_old_ones_are_deleted(tmp_path):
    con = open_store(tmp_path / "s.duckdb")
    con.execute("INSERT INTO interactions (interaction_id, ts, user_id, prompt, completion) VALUES "
                "('a1', now(), 'alice', '[]', 'a'), ('b1', now(), 'bob', '[]', 'b')")
    for k in ("ka", "kb", "kold"):
        con.execute("INSERT INTO judgments VALUES (?, 'm', 'u', 'A', 'raw', now())", [k])
    con.execute("INSERT INTO judgment_subjects VALUES ('ka', 'a1'), ('kb', 'b1')")
    r = forget(con, ["alice"])
    assert r["judgments"] == 2        # hers, and the pre-0004 row that records no subject
    assert con.execute("SELECT key FROM judgments").fetchall() == [("kb",)]
    assert con.execute("SELECT key FROM judgment_subjects").fetchall() == [("kb",)]
    con.close()


def test_the_store_file_keeps_no_deleted_text_after_forget(tmp_path):
    db = tmp_path / "s.duckdb"
    s = TinyStore(db)
    for i in range(50):
        s.shown(f"carol asks {i}", f"answer {i}", "accept", user="carol")
    s.shown("alice asks", f"reply with {MARKER}", "edit", user="alice", edited_text=f"edited {MARKER}")
    # live_outcomes (0008) holds a row per interaction, user ids included (as eval.live.refresh_outcomes writes)
    s.con.execute("INSERT INTO live_outcomes SELECT interaction_id, model_id, user_id, app, task, ts, 'accept', "
                  "NULL, NULL, 0, 0, NULL FROM interactions")
    s.close()
    # what DELETE alone leaves: the text stays in freed blocks
    plain = tmp_path / "plain.duckdb"
    plain.write_bytes(db.read_bytes())
    con = duckdb.connect(str(plain))
    con.execute("DELETE FROM feedback WHERE interaction_id IN (SELECT interaction_id FROM interactions "
                "WHERE user_id = 'alice'); DELETE FROM interactions WHERE user_id = 'alice'; CHECKPOINT; VACUUM")
    con.close()
    assert MARKER.encode() in plain.read_bytes()
    found = erasure.verify(plain, ["alice"])
    assert any("beyond what the live data holds" in f for f in found)
    assert "live_outcomes: 1 row(s)" in found
    r = erasure.forget(db, ["alice"])
    assert r["store"]["rewritten"] and r["store"]["bytes_after"] > 0
    assert MARKER.encode() not in db.read_bytes()
    assert not Path(f"{db}.wal").exists() and not list(tmp_path.glob(".s.duckdb.rewrite-*"))
    con = open_store(db)                       # the rewritten store is whole: rows, keys, migrations, views
    assert con.execute("SELECT count(*) FROM interactions").fetchone()[0] == 50
    assert con.execute("SELECT count(*) FILTER (WHERE user_id = 'alice'), count(*) FROM live_outcomes"
                       ).fetchone() == (0, 50)
    assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] >= 4
    assert con.execute("SELECT count(*) FROM pending_feedback").fetchone()[0] == 0
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO interactions SELECT * FROM interactions LIMIT 1")
    assert con.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 1
    con.close()
    assert erasure.verify(db, ["alice"]) == []


def test_receipt_and_verify(tmp_path, cli, db):
    s = TinyStore(db)
    s.shown("alice asks", f"reply {MARKER}", "accept", user="alice")
    s.shown("bob asks", "reply", "accept", user="bob")
    s.con.execute("INSERT INTO quarantine (source_path, reason, raw) VALUES ('x', 'malformed_json', "
                  "'{\"user_id\": \"alic\\u0065\", \"broken')")
    s.close()
    code, out = cli("forget", "--verify", "alice")
    assert code == 1 and "interactions: 1 row(s)" in out and "quarantine: 1 record(s)" in out
    code, r = cli("forget", "alice", "--json", json_out=True)
    assert code == 0 and r["quarantine"] == 1
    receipt = json.loads(Path(r["receipt"]).read_text())
    assert Path(r["receipt"]).parent == Path(db).parent / "erasure-receipts"
    assert receipt["users"] == 1 and receipt["tables"]["interactions"] == 1
    assert receipt["store_rewritten"]["rewritten"] and receipt["store_rewritten"]["bytes_after"] > 0
    assert "alice" not in json.dumps(receipt) and MARKER not in json.dumps(receipt)
    code, out = cli("forget", "--verify", "alice")
    assert code == 0 and "nothing" in out, out
    code, out = cli("forget", "--verify", "bob")
    assert code == 1 and "tombstones: 1 user(s) have none" in out


def test_verify_finds_a_revoked_snapshot_whose_files_stayed_and_plain_members(tmp_path, cli, db):
    _editor_store(db)
    snap = build_snapshot(RECIPE, db, tmp_path / "snaps")
    con = open_store(db)
    forget(con, ["ed"])
    con.execute("INSERT INTO snapshot_members (version, interaction_id, user_id) VALUES ('v0', 'x', 'ed')")
    con.close()
    snap_copy = tmp_path / "snaps" / snap.version / "sft"
    snap_copy.mkdir()
    (snap_copy / "train.parquet").write_bytes(b"")                 # files put back after revocation
    code, out = cli("forget", "--verify", "ed")
    assert code == 1 and f"snapshot {snap.version}: held the user(s)" in out
    assert "cannot be read" in out and "snapshot_members (plain user ids): 1 row(s)" in out
    os.remove(snap_copy / "train.parquet")


def test_forget_takes_many_users_from_a_file(tmp_path, cli, db):
    s = TinyStore(db)
    s.shown("alice asks", "reply", "accept", user="alice")
    s.close()
    users = tmp_path / "users.txt"
    users.write_text("".join(f"user{i:05d}@example.com\n" for i in range(20_000)) + "alice\n")
    code, r = cli("forget", "--users-file", users, "--json", json_out=True)
    assert code == 0 and r["users"] == 20_001 and r["interactions"] == 1
    code, out = cli("forget", "--verify", "--users-file", users)
    assert code == 0, out
    assert cli("forget")[0] == 2


def test_forget_without_the_key_exits_2_naming_the_fix(tmp_path, cli, db, capsys):
    TinyStore(db).close()
    assert cli("forget", "alice")[0] == 0
    os.rename(f"{db}.key", tmp_path / "elsewhere.key")
    from signals.__main__ import main

    assert main(["forget", "bob", "--store", db]) == 2
    assert f"Restore {db}.key" in capsys.readouterr().err
    assert not Path(f"{db}.key").exists()
