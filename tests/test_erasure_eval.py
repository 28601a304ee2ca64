"""`signals forget` reaches eval's copies: per-example results, the dashboard, and production.

A user's interactions sit in a snapshot, a recorded evaluation's per-example files and
the run in production; after `forget`, the files hold none of their rows, `production`
is rolled back off the run trained on the revoked snapshot (its pointer rewritten), the
receipt says so, and `--verify` finds nothing.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from signals.__main__ import main
from signals.store import open_store
from tests.conftest import ROOT


def test_forget_purges_per_example_results_and_rolls_production_back(tmp_path, capsys):
    store, pointers = tmp_path / "s.duckdb", tmp_path / "runs"
    assert main(["ingest", str(ROOT / "tests" / "data" / "native_example.jsonl"), "--store", str(store)]) == 0
    assert main(["build", "data=smoke", "split.eval_fraction=0.5", f"snapshot_root={tmp_path}/snaps",
                 "--store", str(store), "--json"]) == 0
    con = open_store(store)
    version, snap_path = con.execute("SELECT version, path FROM snapshots").fetchone()
    ids = [r[0] for r in con.execute("SELECT DISTINCT interaction_id FROM interactions ORDER BY 1").fetchall()]
    bobs = {r[0] for r in con.execute("SELECT interaction_id FROM interactions WHERE user_id = 'bob'").fetchall()}
    examples = tmp_path / "runs" / "exp" / "r1" / "eval" / "e1"
    examples.mkdir(parents=True)
    pq.write_table(pa.table({"eval_id": ["e1"] * len(ids), "interaction_id": ids,
                             "cand_answer": [f"answer to {i}" for i in ids]}), examples / "winrate.parquet")
    con.execute("INSERT INTO runs VALUES ('r1', 'exp', 'sft', ?, ?, 'models/tiny', false, ?, '{}', now())",
                [str(examples.parents[1]), str(examples.parents[1] / "model"), version])
    con.execute("INSERT INTO decisions VALUES ('e1', 'r1', 'promote', '[]', '{}', '{}', 'base', ?, ?, NULL, now())",
                [version, str(examples)])
    from eval.registry import alias_target, promote

    promote(con, "r1", pointer_dir=str(pointers))
    assert alias_target(con) == "r1"
    con.close()
    capsys.readouterr()

    assert main(["forget", "bob", "--store", str(store), "--pointer-dir", str(pointers)]) == 0
    out = capsys.readouterr().out
    assert f"{len(bobs)} row(s) removed from 1 file(s)" in out and "production rolled back off r1" in out
    left = set(pq.read_table(examples / "winrate.parquet").column("interaction_id").to_pylist())
    assert left and not (left & bobs)
    con = open_store(store, read_only=True)
    assert alias_target(con) is None                                  # back to the off-the-shelf model
    con.close()
    assert json.loads((pointers / "production.json").read_text())["run_id"] is None
    receipt = json.loads(open(out.split("receipt: ", 1)[1].strip()).read())
    assert receipt["eval"] == {"examples": {"files": 1, "rows": len(bobs)}, "rolled_back": ["r1"]}
    assert "bob" not in json.dumps(receipt)

    assert main(["forget", "--verify", "bob", "--store", str(store)]) == 0
    assert "nothing of the 1 user(s) remains" in capsys.readouterr().out
