"""The demo's product simulator: seeded, native schema, with the hidden style learnable."""

from __future__ import annotations

import json
import re
from collections import Counter

from scripts.simulate import HOUSE_STYLE, simulate


def _records(files):
    good, bad = [], 0
    for f in files:
        for line in f.read_text().splitlines():
            try:
                good.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return good, bad


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = simulate(tmp_path / "a", days=2, per_day=30, seed=1)
    b = simulate(tmp_path / "b", days=2, per_day=30, seed=1)
    c = simulate(tmp_path / "c", days=2, per_day=30, seed=2)
    assert [f.read_bytes() for f in a] == [f.read_bytes() for f in b]
    assert [f.read_bytes() for f in a] != [f.read_bytes() for f in c]


def test_logs_have_every_kind_malformed_lines_and_early_feedback(tmp_path):
    files = simulate(tmp_path, days=2, per_day=120, seed=0)
    records, malformed = _records(files)
    assert malformed >= 1
    interactions = [r for r in records if "completion" in r]
    events = [r for r in records if "kind" in r and "completion" not in r]
    events += [dict(f, interaction_id=r["interaction_id"]) for r in interactions for f in r.get("feedback", [])]
    kinds = Counter(e["kind"] for e in events)
    assert {"accept", "edit", "reject", "rate", "choose"} <= set(kinds)
    assert "like" in kinds   # an unknown kind, for quarantine
    day1 = {r["interaction_id"] for r in _records(files[1:2])[0]}
    early = [json.loads(line) for line in files[0].read_text().splitlines()
             if line.startswith("{") and line.endswith("}") and "2026-11-02-" in line]
    assert early and all(e["interaction_id"] not in day1 for e in early)


def test_edits_follow_the_hidden_house_style(tmp_path):
    files = simulate(tmp_path, days=1, per_day=200, seed=0)
    records, _ = _records(files)
    apps = {r["interaction_id"]: r["app"] for r in records if "completion" in r}
    edits = [(apps[r["interaction_id"]], r["edited_text"]) for r in records
             if r.get("kind") == "edit" and r.get("edited_text")]
    edits += [(r["app"], f["edited_text"]) for r in records if "completion" in r
              for f in r.get("feedback", []) if f["kind"] == "edit"]
    assert len(edits) > 20
    assert all(re.search(HOUSE_STYLE[app], text) for app, text in edits)
