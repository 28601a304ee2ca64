"""Integrity under failure: SIGKILL mid-ingest leaves all or none of a file; one writer waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _count(db: str) -> int:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute("SELECT count(*) FROM interactions").fetchone()[0]
    finally:
        con.close()


def _ingest_cmd(db, *paths, wait="0"):
    return [sys.executable, "-m", "signals", "ingest", *map(str, paths), "--store", db, "--wait", wait]


@pytest.mark.slow
def test_sigkill_mid_ingest_leaves_all_or_none_and_a_rerun_finishes(tmp_path):
    big = tmp_path / "big.jsonl"
    n = 150_000
    with open(big, "w") as f:
        for i in range(n):
            f.write(json.dumps({"interaction_id": f"i{i}", "ts": 1714550400 + i, "user_id": f"u{i % 97}",
                                "prompt": [{"role": "user", "content": "q" * 200}], "completion": "a" * 300,
                                "feedback": [{"kind": "accept"}]}) + "\n")
    db = str(tmp_path / "s.duckdb")
    # first let a tiny ingest create the store, so every kill below lands inside the big ingest
    (tmp_path / "small.jsonl").write_text(json.dumps({"interaction_id": "s", "ts": 0, "prompt": "p", "completion": "c"}) + "\n")
    subprocess.run(_ingest_cmd(db, tmp_path / "small.jsonl"), cwd=ROOT, check=True, capture_output=True)
    outcomes = []
    for delay in (0.6, 1.2, 2.0):
        p = subprocess.Popen(_ingest_cmd(db, big), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        got = _count(db) - 1
        assert got in (0, n), f"after SIGKILL at {delay}s the store holds {got} of {n} rows of the file"
        outcomes.append(got)
        if got == n:
            break
    r = subprocess.run(_ingest_cmd(db, big), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _count(db) == n + 1
    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM feedback").fetchone()[0] == n
    assert con.execute("SELECT count(*) FROM ingests WHERE path = ?", [str(big)]).fetchone()[0] == 1
    # a ~90 MB file is read in parallel; every row still names its own line
    assert con.execute("SELECT count(*) FROM interactions WHERE interaction_id <> 's' "
                       "AND source_row <> substr(interaction_id, 2)::BIGINT + 1").fetchone()[0] == 0
    con.close()
    assert 0 in outcomes, "no kill landed before the commit; make the file larger"


def test_a_second_writer_waits_then_fails_naming_the_lock_holder(tmp_path):
    db = str(tmp_path / "s.duckdb")
    (tmp_path / "a.jsonl").write_text(json.dumps({"interaction_id": "a", "ts": 0, "prompt": "p", "completion": "c"}) + "\n")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(float(sys.argv[2]))", db, "2.5"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    t0 = time.monotonic()
    r = subprocess.run(_ingest_cmd(db, tmp_path / "a.jsonl", wait="0.5"), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 3
    assert f"locked by process {holder.pid}" in r.stderr and "--wait" in r.stderr
    assert time.monotonic() - t0 >= 0.5
    r = subprocess.run(_ingest_cmd(db, tmp_path / "a.jsonl", wait="20"), cwd=ROOT, capture_output=True, text=True)
    holder.wait()
    assert r.returncode == 0, r.stderr
    assert _count(db) == 1
