"""A user forgotten after a promotion: production leaves the run trained on their data, and
the next scheduled run retrains on a snapshot without them; `--verify` finds nothing."""

from __future__ import annotations

import glob
import json

import duckdb
import pyarrow.parquet as pq

from scripts.nightly import EXIT_OK
from tests.scripts.test_nightly import nightly, overrides, stages


def test_forget_rolls_production_back_and_the_next_run_retrains(tmp_path, tiny_model_dir, capsys):
    from signals.__main__ import main as signals_main

    args = overrides(tmp_path, tiny_model_dir)
    first = nightly(args)
    assert first.returncode == EXIT_OK, first.stdout + first.stderr
    promoted = stages(first.stdout)["promote"]["reason"].split(" -> ")[1]
    ids = set()
    for f in glob.glob(f"{tmp_path}/runs/demo/*/eval/*/*.parquet"):
        ids |= set(pq.read_table(f, columns=["interaction_id"]).column(0).to_pylist())
    con = duckdb.connect(str(tmp_path / "signal.duckdb"), read_only=True)
    user = con.execute("SELECT user_id FROM interactions WHERE interaction_id IN (SELECT unnest(?::VARCHAR[])) "
                       "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1", [sorted(ids)]).fetchone()[0]
    con.close()

    store = str(tmp_path / "signal.duckdb")
    assert signals_main(["forget", user, "--store", store, "--pointer-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert f"production rolled back off {promoted}" in out and "row(s) removed from" in out
    assert json.loads((tmp_path / "runs" / "production.json").read_text())["run_id"] is None

    again = nightly(args)
    assert again.returncode == EXIT_OK, again.stdout + again.stderr
    log = stages(again.stdout)
    assert log["plan"]["status"] == "train" and "was revoked" in log["plan"]["reason"]
    assert log["promote"]["promoted"]
    assert json.loads((tmp_path / "runs" / "production.json").read_text())["run_id"] not in (None, promoted)
    assert signals_main(["forget", "--verify", user, "--store", store]) == 0
