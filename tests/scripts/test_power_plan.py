"""The scheduled job's power check (scripts/nightly.py power_check): warn or refuse to train
when the eval split cannot detect gate.power.effect for the gate's primary metric."""

from __future__ import annotations

from scripts.config import compose
from scripts.nightly import power_check
from tests.eval.conftest import make_rows, write_snapshot


def cfg_for(tmp_path, *overrides):
    write_snapshot(tmp_path / "snaps", "v-small", make_rows(40, seed=1), make_rows(38, seed=2))
    return compose([f"store={tmp_path / 'none.duckdb'}", f"snapshot_root={tmp_path / 'snaps'}", *overrides])


def test_off_by_default_then_warn_or_refuse(tmp_path):
    assert power_check(cfg_for(tmp_path), "v-small") == (None, None)
    refused, warning = power_check(cfg_for(tmp_path, "gate.power.effect=0.05"), "v-small")
    assert refused is None and "preference_accuracy on n=38" in warning and "needs n=785 (too few)" in warning
    refused, warning = power_check(cfg_for(tmp_path, "gate.power.effect=0.05", "gate.power.on_short=refuse"), "v-small")
    assert warning is None and "needs n=785" in refused
    # 38 pairs detect 0.227 at the default sd: an effect of 0.3 is within reach
    assert power_check(cfg_for(tmp_path, "gate.power.effect=0.3"), "v-small") == (None, None)
    # the demo gates on the win rate over at most eval.generation.max_prompts prompts
    refused, warning = power_check(cfg_for(tmp_path, "+exp=demo", "gate.power.effect=0.1"), "v-small")
    assert "winrate on n=30" in warning
