"""Privacy: opt-out keeps data, forget erases it for good and names snapshots, retention purges."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime

import duckdb
import pytest

from signals import keys
from signals.ingest import ingest_paths
from signals.privacy import forget, retain
from signals.store import open_store
from tests.signals.conftest import event, interaction, write_jsonl


def _q(db, q):
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def _seed(tmp_path, db):
    write_jsonl(tmp_path / "a.jsonl", [
        interaction("a1", user_id="alice", feedback=[{"kind": "accept"}]),
        interaction("b1", user_id="bob"),
        event("e-pending", "a2", "reject", user_id="alice"),
        '{"interaction_id": "a3", "user_id": "alice", "broken',
    ])
    return ingest_paths([tmp_path / "a.jsonl"], db=db)


def test_optout_keeps_the_data_and_records_the_user(tmp_path, db, cli, stats):
    _seed(tmp_path, db)
    code, out = cli("optout", "alice", "alice")
    assert code == 0
    s = stats()
    assert s["opted_out"] == 1 and s["interactions"] == 2
    assert _q(db, "SELECT user_id FROM optouts") == [("alice",)]


def _keyed(db, value):
    key = bytes.fromhex(open(f"{db}.key").read())
    return hmac.new(key, hashlib.sha256(value.encode()).hexdigest().encode(), hashlib.sha256).hexdigest()


def test_forget_erases_everything(tmp_path, db, cli, stats):
    _seed(tmp_path, db)
    code, report = cli("forget", "alice", "--json", json_out=True)
    assert code == 0
    assert (report["interactions"], report["feedback"], report["quarantine"], report["pending"]) == (1, 2, 1, 1)
    s = stats()
    assert s["interactions"] == 1 and s["pending"] == 0 and s["quarantined"] == 0 and s["forgotten"] == 1
    for table in ("interactions", "feedback", "quarantine"):
        assert _q(db, f"SELECT count(*) FROM {table} WHERE user_id = 'alice'") == [(0,)]
    # the tombstone is keyed: not the guessable sha256, but HMAC(key, sha256(id)) under the key file
    assert _q(db, "SELECT count(*) FROM tombstones WHERE user_hash = sha256('alice')") == [(0,)]
    assert _q(db, "SELECT user_hash FROM tombstones") == [(_keyed(db, "alice"),)]
    assert _q(db, "SELECT count(*) FROM forgotten_interactions WHERE interaction_hash = ?".replace("?", f"'{_keyed(db, 'a1')}'")) == [(1,)]
    assert os.stat(f"{db}.key").st_mode & 0o777 == 0o600


def test_old_logs_do_not_bring_a_forgotten_user_back(tmp_path, db, cli):
    _seed(tmp_path, db)
    assert cli("forget", "alice")[0] == 0
    # an old log (other bytes, so not skipped by hash) and a feedback-only log naming her interaction
    write_jsonl(tmp_path / "old" / "b.jsonl", [interaction("a1", user_id="alice"), interaction("a9", user_id="alice"),
                                               event("late", "a1", "edit", edited_text="x"), interaction("c1", user_id="carol")])
    r = ingest_paths([tmp_path / "old"], db=db)
    assert (r["interactions"], r["feedback"], r["forgotten"]) == (1, 0, 3)
    assert _q(db, "SELECT count(*) FROM interactions WHERE user_id = 'alice'") == [(0,)]
    assert _q(db, "SELECT count(*) FROM feedback WHERE interaction_id = 'a1'") == [(0,)]


def test_an_in_memory_store_keeps_its_key_in_memory(tmp_path, monkeypatch):
    """`ingest_paths(..., db=":memory:")` writes no key file (it once wrote ./:memory:.key)."""
    monkeypatch.chdir(tmp_path)
    ingest_paths([write_jsonl(tmp_path / "a.jsonl", [interaction("a1", user_id="alice")])], db=":memory:")
    assert not list(tmp_path.glob("*.key"))


def test_keyed_hash_in_sql_is_the_python_one_and_needs_the_key(tmp_path, db, monkeypatch):
    con = open_store(db)
    key = keys.install(con)
    for v in ("alice", "jos\u00e9", 'o"brien', "bob@example.com"):
        assert con.execute("SELECT keyed_hash(?)", [v]).fetchone()[0] == keys.keyed(key, v) == \
            hmac.new(key, hashlib.sha256(v.encode()).hexdigest().encode(), hashlib.sha256).hexdigest()
    monkeypatch.setenv("SIGNALS_KEY", "ab" * 32)           # another key: refused, it is not this store's
    with pytest.raises(keys.KeyMissing, match="not the one"):
        keys.install(con)
    monkeypatch.delenv("SIGNALS_KEY")
    forget(con, ["alice"])
    con.close()
    os.rename(f"{db}.key", f"{db}.key.bak")                 # the key is lost: forget refuses, naming the fix
    con = open_store(db)
    with pytest.raises(keys.KeyMissing, match=r"Restore .*store.duckdb.key"):
        forget(con, ["bob"])
    assert con.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 1
    monkeypatch.setenv("SIGNALS_KEY", key.hex())             # the key given as $SIGNALS_KEY works
    assert forget(con, ["bob"])["users"] == 1
    con.close()


def test_migration_0004_keys_old_tombstones_and_plain_members(tmp_path, db):
    con = open_store(db)      # a store as 0001-0003 left it: unsalted sha256 tombstones, plain member ids
    con.execute("INSERT OR REPLACE INTO settings VALUES ('id_hash', 'sha256')")
    con.execute("INSERT INTO tombstones VALUES (sha256('carol'), now())")
    con.execute("INSERT INTO forgotten_interactions VALUES (sha256('c1'), now())")
    con.execute("INSERT INTO snapshot_members (version, interaction_id, user_id) VALUES ('v1', 'b1', 'bob')")
    key = keys.install(con)
    assert con.execute("SELECT user_hash FROM tombstones").fetchall() == [(keys.keyed(key, "carol"),)]
    assert con.execute("SELECT interaction_hash FROM forgotten_interactions").fetchall() == [(keys.keyed(key, "c1"),)]
    assert con.execute("SELECT user_id, user_hash FROM snapshot_members").fetchall() == [(None, keys.keyed(key, "bob"))]
    keys.install(con)                                       # once only
    assert con.execute("SELECT user_hash FROM tombstones").fetchall() == [(keys.keyed(key, "carol"),)]
    con.close()


def test_forget_of_100k_users_in_one_call(tmp_path, db):
    _seed(tmp_path, db)
    users = [f"user{i:06d}@example.com" for i in range(100_000)] + ["alice"]
    con = open_store(db)
    r = forget(con, users)
    assert r["users"] == 100_001 and r["interactions"] == 1 and r["quarantine"] == 1
    assert con.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 100_001
    assert con.execute("SELECT count(*) FROM interactions").fetchone()[0] == 1
    con.close()


def test_forget_reports_and_revokes_the_snapshots_that_held_the_user(tmp_path, db):
    _seed(tmp_path, db)
    con = open_store(db)
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'snapshots'").fetchall()}
    con.execute("INSERT INTO snapshot_members (version, interaction_id, user_id) VALUES "
                "('v1', 'a1', 'alice'), ('v1', 'b1', 'bob'), ('v2', 'b1', 'bob')")   # unkeyed rows still match
    if cols:
        con.execute("INSERT INTO snapshots (version, recipe_name, path, manifest, created_at) VALUES "
                    "('v1', 'demo', 'x', '{}', now()), ('v2', 'demo', 'y', '{}', now())")
    report = forget(con, ["alice"])
    assert report["snapshots"] == ["v1"]
    if report["revoked"]:
        assert con.execute("SELECT version FROM snapshots WHERE revoked_at IS NOT NULL").fetchall() == [("v1",)]
    con.close()


def test_retain_purges_what_is_older_and_saves_the_policy(tmp_path, db, cli):
    write_jsonl(tmp_path / "r.jsonl", [interaction("old", ts="2020-01-01T00:00:00Z", feedback=[{"kind": "accept"}]),
                                       interaction("new", ts="2024-05-01T00:00:00Z")])
    ingest_paths([tmp_path / "r.jsonl"], db=db)
    con = open_store(db)
    r = retain(con, 365, now=datetime(2024, 6, 1, tzinfo=UTC), save=True)
    assert (r["interactions"], r["feedback"]) == (1, 1)
    assert con.execute("SELECT interaction_id FROM interactions").fetchall() == [("new",)]
    assert retain(con, None, now=datetime(2024, 6, 1, tzinfo=UTC))["days"] == 365
    con.close()
    code, out = cli("retain", "--days", "100000")
    assert code == 0 and "deleted 0 interactions" in out
