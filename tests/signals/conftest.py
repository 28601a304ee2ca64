"""Fixtures for the signal store tests: a store path in tmp_path, JSONL writers, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


def interaction(iid: str, **kw) -> dict:
    """A valid native interaction record; keyword arguments override fields."""
    rec = {"interaction_id": iid, "ts": "2024-05-01T10:00:00Z", "user_id": "u1", "app": "support",
           "task": "reply", "model_id": "m0", "prompt": [{"role": "user", "content": f"question {iid}"}],
           "completion": f"answer {iid}"}
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not ...}


def event(eid: str, iid: str, kind: str = "accept", **kw) -> dict:
    rec = {"event_id": eid, "interaction_id": iid, "ts": "2024-05-01T10:05:00Z", "kind": kind}
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not ...}


def write_jsonl(path: Path, records) -> Path:
    """Records are dicts (dumped) or str (written verbatim, for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "store.duckdb")


@pytest.fixture
def cli(db, capsys):
    """Run `python -m signals ARGS --store <db>` in-process; returns (exit code, stdout)."""
    from signals.__main__ import main

    def run(*args, json_out=False):
        argv = [str(a) for a in args] + ["--store", db]
        code = main(argv)
        out = capsys.readouterr().out
        return code, (json.loads(out) if json_out else out)

    return run


@pytest.fixture
def stats(cli):
    def get() -> dict:
        code, s = cli("stats", "--json", json_out=True)
        assert code == 0
        return s

    return get
