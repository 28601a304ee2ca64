"""Every experiment in conf/exp/ composes with Hydra, so a broken config fails CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import ROOT

CONF = ROOT / "conf"
EXPS = sorted(p.stem for p in (CONF / "exp").glob("*.yaml"))
GROUPS = ["model", "method", "peft", "data", "eval", "gate", "launcher", "exp"]


def test_config_groups_exist():
    for group in GROUPS:
        assert list((CONF / group).glob("*.yaml")), f"conf/{group}/ has no options"


@pytest.mark.parametrize("exp", EXPS)
def test_exp_composes(exp):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+exp={exp}"], return_hydra_config=False)
    assert cfg.exp_name == exp
    for group in ["model", "method", "data", "eval", "gate", "launcher"]:
        assert group in cfg, f"+exp={exp}: no {group}"
    assert Path(str(cfg.model.name_or_path))
