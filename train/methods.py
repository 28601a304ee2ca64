"""The one table that maps a `method=` name to its TRL trainer, config class and data.

Everything method-specific that is not a TRL argument lives here, so adding a method
is one row: which trainer, which `*Config` dataclass validates `method.args`, which
snapshot kind feeds it, which columns TRL reads, and which model head it trains.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    trainer: str            # "module:Class"
    config: str             # "module:Class", the dataclass that `method.args` is fed to
    kind: str               # snapshot kind: sft | pref | kto
    columns: tuple[str, ...]  # the TRL columns kept from the snapshot (extras are dropped)
    head: str = "causal_lm"   # causal_lm | seq_cls (reward model: one logit)


METHODS: dict[str, Method] = {
    "sft": Method("trl:SFTTrainer", "trl:SFTConfig", "sft", ("messages",)),
    "dpo": Method("trl:DPOTrainer", "trl:DPOConfig", "pref", ("prompt", "chosen", "rejected")),
    "kto": Method("trl:KTOTrainer", "trl:KTOConfig", "kto", ("prompt", "completion", "label")),
    "orpo": Method("trl.experimental.orpo:ORPOTrainer", "trl.experimental.orpo:ORPOConfig", "pref",
                   ("prompt", "chosen", "rejected")),
    "reward": Method("trl:RewardTrainer", "trl:RewardConfig", "pref",
                     ("prompt", "chosen", "rejected"), head="seq_cls"),
}


def load_object(path: str):
    """Import "package.module:Name" and return the attribute."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def config_fields(name: str) -> set[str]:
    """The settable fields of a method's TRL config dataclass."""
    cls = load_object(METHODS[name].config)
    return {f.name for f in dataclasses.fields(cls) if f.init}
