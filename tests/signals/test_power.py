"""Power before training (signals/power.py) and holding out by count (split.eval_count)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from signals import power
from signals.recipe import RecipeError, normalize
from tests.signals.store_helpers import T0, TinyStore
from tests.signals.test_build_rules import build, rows


@pytest.fixture
def store(tmp_path):
    s = TinyStore(tmp_path / "s.duckdb")
    yield s
    s.close()


def test_hold_out_by_count_hash_and_time(store, tmp_path):
    ids = [store.shown(f"distinct prompt {i}", f"answer {i}", "accept", ts=T0 + timedelta(days=i)) for i in range(30)]
    snap = build(store, tmp_path, split={"eval_count": 12})
    assert len(rows(snap, "sft", "eval")) == 12 and len(rows(snap, "sft", "train")) == 18
    assert snap.manifest["recipe"]["split"]["eval_count"] == 12
    snap = build(store, tmp_path, split={"method": "time", "eval_count": 5})
    assert [r["interaction_id"] for r in rows(snap, "sft", "eval")] == ids[25:]
    everything = build(store, tmp_path, split={"eval_count": 500})        # more than there is: all of it
    assert len(rows(everything, "sft", "eval")) == 30


def test_eval_count_checked():
    with pytest.raises(RecipeError, match="split.eval_count: 0 must be >= 1"):
        normalize({"name": "x", "split": {"eval_count": 0}})
    with pytest.raises(RecipeError, match="set one"):
        normalize({"name": "x", "split": {"method": "time", "eval_count": 5, "cutoff": "2026-01-01"}})


def test_mde_and_needed_size():
    assert math.isclose(power.mde(100, 0.5), power.z_sum() * 0.05)
    assert power.needed(0.1, 0.5) == 197 and power.mde(197, 0.5) <= 0.1 < power.mde(196, 0.5)
    r = power.report("preference_accuracy", 38, effect=0.05)
    assert r["short"] and r["needed"] == 785 and 0.22 < r["mde"] < 0.23
    assert "needs n=785 (too few)" in power.describe(r)
    assert "MDE unknown" in power.describe(power.report("sft_loglik", 38))
    assert power.eval_size("winrate", {"sft": {"eval": 500}}, max_prompts=64) == 64
