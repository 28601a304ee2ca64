"""Every experiment in conf/exp/ composes with Hydra, so a broken config fails CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.config import compose
from tests.conftest import ROOT

CONF = ROOT / "conf"
EXPS = sorted(p.stem for p in (CONF / "exp").glob("*.yaml"))
GROUPS = ["model", "method", "peft", "data", "eval", "gate", "launcher", "exp"]


def test_config_groups_exist():
    for group in GROUPS:
        assert list((CONF / group).glob("*.yaml")), f"conf/{group}/ has no options"


@pytest.mark.parametrize("exp", EXPS)
def test_exp_composes(exp):
    cfg = compose([f"+exp={exp}"])                 # every schema checked, every key known
    assert cfg.exp_name == exp
    for group in ["model", "method", "data", "eval", "gate", "launcher"]:
        assert group in cfg, f"+exp={exp}: no {group}"
    assert Path(str(cfg.model.name_or_path))


@pytest.mark.parametrize("exp", EXPS)
def test_exp_method_args_are_valid_trl_configs(exp, tmp_path):
    """Each method's `args` are fields of its TRL config class and build it (CPU settings)."""
    from omegaconf import OmegaConf

    from train.config import method_nodes, validate
    from train.methods import METHODS, load_object

    cfg = compose([f"+exp={exp}"])
    validate(cfg)                                   # raises ConfigError listing every problem
    for node in method_nodes(cfg):
        args = OmegaConf.to_container(node.args, resolve=True)
        trl_config = load_object(METHODS[node.name].config)
        built = trl_config(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                           **args)
        for key, value in args.items():
            assert getattr(built, key) == value or key in ("loss_type",), (exp, key)


def test_every_launcher_names_an_existing_accelerate_config():
    import yaml

    for path in sorted((CONF / "launcher").glob("*.yaml")):
        launcher = yaml.safe_load(path.read_text())
        if launcher["tool"] == "accelerate":
            acc = yaml.safe_load((CONF / "accelerate" / f"{launcher['accelerate_config']}.yaml").read_text())
            assert acc["distributed_type"] in ("MULTI_GPU", "DEEPSPEED", "FSDP"), path
            if acc["distributed_type"] == "DEEPSPEED" and acc["deepspeed_config"]["zero_stage"] == 3:
                assert acc["deepspeed_config"]["zero3_save_16bit_model"] is True, path
