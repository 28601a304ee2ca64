"""Privacy: opt-out keeps data, forget erases it for good and names snapshots, retention purges."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from signals.ingest import ingest_paths
from signals.store import open_store
from signals.privacy import forget, retain
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


def test_forget_erases_everything_and_old_logs_do_not_bring_it_back(tmp_path, db, cli, stats):
    _seed(tmp_path, db)
    code, report = cli("forget", "alice", "--json", json_out=True)
    assert code == 0
    assert (report["interactions"], report["feedback"], report["quarantine"]) == (1, 2, 1)
    s = stats()
    assert s["interactions"] == 1 and s["pending"] == 0 and s["quarantined"] == 0 and s["forgotten"] == 1
    for table in ("interactions", "feedback", "quarantine"):
        assert _q(db, f"SELECT count(*) FROM {table} WHERE user_id = 'alice'") == [(0,)]
    assert _q(db, "SELECT count(*) FROM tombstones WHERE user_hash = sha256('alice')") == [(1,)]
    # an old log (other bytes, so not skipped by hash) and a feedback-only log naming her interaction
    write_jsonl(tmp_path / "old" / "b.jsonl", [interaction("a1", user_id="alice"), interaction("a9", user_id="alice"),
                                               event("late", "a1", "edit", edited_text="x"), interaction("c1", user_id="carol")])
    r = ingest_paths([tmp_path / "old"], db=db)
    assert (r["interactions"], r["feedback"], r["forgotten"]) == (1, 0, 3)
    assert _q(db, "SELECT count(*) FROM interactions WHERE user_id = 'alice'") == [(0,)]
    assert _q(db, "SELECT count(*) FROM feedback WHERE interaction_id = 'a1'") == [(0,)]


def test_forget_reports_and_revokes_the_snapshots_that_held_the_user(tmp_path, db):
    _seed(tmp_path, db)
    con = open_store(db)
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'snapshots'").fetchall()}
    con.execute("INSERT INTO snapshot_members (version, interaction_id, user_id) VALUES "
                "('v1', 'a1', 'alice'), ('v1', 'b1', 'bob'), ('v2', 'b1', 'bob')")
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
