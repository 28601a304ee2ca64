"""Config mistakes stop `python -m train` before any model loads, with a useful message."""

from __future__ import annotations

import importlib.util

import pytest

import train.models
from train.__main__ import main


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the config error")
    monkeypatch.setattr(train.models, "load_causal_lm", refuse)
    monkeypatch.setattr(train.models, "build_tiny", refuse)


def test_unknown_method_arg_names_the_valid_fields(run_overrides, no_model_load, capsys):
    rc = main(["+exp=smoke", *run_overrides, "+method.args.betta=0.1", "+then.dpo.args.bogus=1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "method.args.betta: not a field of SFTConfig" in err
    assert "then.dpo.args.bogus: not a field of DPOConfig" in err
    assert "learning_rate" in err and "per_device_train_batch_size" in err   # the valid fields
    assert "did you mean" in err or "valid fields" in err


def test_trl_field_passes_through(run_overrides, no_model_load, capsys):
    """`method.args.X` accepts any real field of the TRL config (here a DPO one)."""
    from scripts.config import compose
    from train.config import validate

    cfg = compose(["+exp=smoke", *run_overrides, "+then.dpo.args.label_smoothing=0.1",
                   "then.dpo.args.beta=0.05"])
    validate(cfg)
    assert cfg.then.dpo.args.beta == 0.05


def test_qlora_on_cpu_fails_before_loading(run_overrides, no_model_load, capsys):
    rc = main(["+exp=smoke", *run_overrides, "peft=qlora"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "peft=qlora" in err and "CUDA" in err


def test_unknown_lora_field_and_missing_tracker(run_overrides, no_model_load, capsys):
    rc = main(["+exp=smoke", *run_overrides, "peft=lora", "+peft.rank=8",
               "tracking.report_to=[wandb]"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "peft.rank: not a field of peft.LoraConfig" in err
    if importlib.util.find_spec("wandb") is None:
        assert "tracking.report_to: wandb is not installed (pip install wandb)" in err


def test_unknown_method_name(run_overrides, no_model_load, capsys):
    rc = main(["+exp=smoke", *run_overrides, "method.name=ppo"])
    assert rc == 2
    assert "unknown method 'ppo'" in capsys.readouterr().err
