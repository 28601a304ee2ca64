"""Every exp's gate can be met by its recipe: each gated metric's eval split is enabled, its
metric group is scored, and on the exp's own data the split is not empty.

The data check builds each exp's snapshot the way the pipeline does (the ingest and build
stages into a temporary store): simulated logs for the exps without data of their own, the real sample
data for the others, which are skipped, saying why, when ../shared/data/real is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from eval.harness import GROUP_SPLIT, METRIC_SPLIT
from signals.power import METRIC_KIND
from tests.conftest import ROOT

EXPS = sorted(p.stem for p in (ROOT / "conf" / "exp").glob("*.yaml"))


def compose(tmp_path: Path, exp: str):
    from scripts.config import compose as compose_tree

    return compose_tree([f"+exp={exp}", f"store={tmp_path / 'signal.duckdb'}", f"snapshot_root={tmp_path / 'snaps'}",
                         f"output_root={tmp_path / 'runs'}", f"nightly.landing={tmp_path / 'landing'}"])


def gated(cfg) -> list[str]:
    return [m for m in [cfg.gate.primary, *(cfg.gate.guards or {})] if m]


def needs(cfg, metric: str) -> str:
    """The snapshot kind a gated metric reads (win rate: the generation prompts' kind)."""
    return str(cfg.eval.generation.split) if METRIC_SPLIT[metric] == "gen" else METRIC_KIND[metric]


@pytest.mark.parametrize("exp", EXPS)
def test_gated_metrics_are_scored_and_their_splits_enabled(tmp_path, exp):
    cfg = compose(tmp_path, exp)
    groups = list(cfg.eval.metrics or GROUP_SPLIT)
    for metric in gated(cfg):
        assert metric in METRIC_SPLIT, f"{exp}: gate metric {metric!r} is not one eval computes"
        group = next(g for g, s in GROUP_SPLIT.items() if s == METRIC_SPLIT[metric])
        assert group in groups, f"{exp}: gate metric {metric!r} needs eval.metrics to include {group!r}"
        kind = needs(cfg, metric)
        assert cfg.data[kind].enabled, f"{exp}: gate metric {metric!r} reads the {kind} split, which data.{kind}.enabled turns off"


@pytest.mark.parametrize("exp", EXPS)
def test_gated_splits_are_not_empty_on_the_exps_data(tmp_path, exp):
    from scripts import stages as chain

    cfg = compose(tmp_path, exp)
    seed = OmegaConf.to_container(cfg.seed_store, resolve=True) if cfg.get("seed_store") else {}
    for p in (seed.get("ingest") or {}).get("paths") or []:
        if not Path(p).exists():
            pytest.skip(f"{exp}: its data {p} is absent (the real sample data; `python -m signals fetch` or "
                        "../shared/data/real)")
    if not seed and not cfg.nightly.get("simulate"):
        from scripts.simulate import simulate

        simulate(tmp_path / "landing", days=2, per_day=200, seed=0)   # the product logs the docs assume
    ctx = chain.Context(cfg, landing=True)
    chain.run(ctx, ["ingest", "build"])
    counts = ctx.snapshot.manifest["counts"]
    for metric in gated(cfg):
        kind = needs(cfg, metric)
        assert counts[kind]["eval"] > 0, (f"{exp}: gate metric {metric!r} needs the {kind} eval split, empty on "
                                          f"its data (counts {counts})")


@pytest.mark.parametrize("exp", EXPS)
def test_a_capped_eval_still_meets_min_eval_size(tmp_path, exp):
    """`eval.max_examples` (the CPU sizing of the real-data exps) never caps a gated split below
    what the gate needs: a capped eval may be inconclusive for its data, not for its cap."""
    cfg = compose(tmp_path, exp)
    cap = cfg.eval.get("max_examples")
    assert cap is None or cap >= cfg.gate.min_eval_size, (
        f"{exp}: eval.max_examples={cap} is below gate.min_eval_size={cfg.gate.min_eval_size}")
