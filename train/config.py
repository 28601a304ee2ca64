"""Check a composed config against TRL and PEFT before any model or GPU time is spent.

The tree is composed once by the parent process (`scripts.config.compose`), which fixes
the run directory and freezes the resolved config there (`train/rundir.py`); workers
read that file and never compose again (no per-rank run-directory race).

`validate(cfg)` gathers every problem (unknown TRL fields, unknown LoRA fields,
QLoRA without CUDA, a missing tracker package, launcher values) and raises one
`ConfigError` listing them all.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import textwrap
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from signals.config import CONF_DIR, ConfigError, did_you_mean

ROOT = CONF_DIR.parent
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def peft_node(cfg: DictConfig) -> DictConfig | None:
    """The LoRA settings, or None for a full fine-tune (`peft=none` composes to an empty node)."""
    peft = cfg.get("peft")
    return peft if peft else None


def method_nodes(cfg: DictConfig) -> list[DictConfig]:
    """The methods a run trains, in order: `method`, then each entry of `then`."""
    return [cfg.method, *(cfg.get("then") or {}).values()]


def _unknown(kind: str, given, valid: set[str], where: str) -> list[str]:
    out = []
    for key in given:
        if key in valid:
            continue
        hint = did_you_mean(key, valid)
        listing = textwrap.fill(", ".join(sorted(valid)), width=96, initial_indent="    ",
                                subsequent_indent="    ")
        out.append(f"{where}.{key}: not a field of {kind}{hint}; valid fields:\n{listing}")
    return out


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming every problem; imports TRL/PEFT config classes, loads no model."""
    from train.methods import METHODS, config_fields

    problems: list[str] = []

    nodes = [("method", cfg.method)] + [(f"then.{k}", v) for k, v in (cfg.get("then") or {}).items()]
    for where, node in nodes:
        name = node.get("name")
        if name not in METHODS:
            problems.append(f"{where}.name: unknown method {name!r}; choose from {sorted(METHODS)}")
            continue
        spec = METHODS[name]
        if node.get("kind", spec.kind) != spec.kind:
            problems.append(f"{where}.kind: {name} trains on {spec.kind!r} data, not {node.kind!r}")
        args = node.get("args") or {}
        problems += _unknown(spec.config.split(":")[1], args.keys(), config_fields(name), f"{where}.args")

    peft = peft_node(cfg)
    if peft is not None:
        from peft import LoraConfig

        lora_fields = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
        problems += _unknown("peft.LoraConfig", [k for k in peft if k != "quantization"],
                             lora_fields, "peft")
        if peft.get("quantization"):
            import torch

            if not torch.cuda.is_available():
                problems.append("peft=qlora: 4-bit QLoRA needs a CUDA GPU and bitsandbytes; this "
                                "machine has no CUDA device (use peft=lora on CPU)")
            elif importlib.util.find_spec("bitsandbytes") is None:
                problems.append("peft=qlora: bitsandbytes is not installed (pip install bitsandbytes)")
            else:
                from transformers import BitsAndBytesConfig

                problems += _unknown("transformers.BitsAndBytesConfig", peft.quantization.keys(),
                                     set(BitsAndBytesConfig.__init__.__code__.co_varnames),
                                     "peft.quantization")
    if cfg.get("save_merged") and peft is None:
        problems.append("save_merged=true needs peft=lora (a full fine-tune already saves model/)")

    for tracker in (cfg.get("tracking") or {}).get("report_to") or []:
        if tracker not in TRACKERS:
            problems.append(f"tracking.report_to: unknown {tracker!r}; choose from {sorted(TRACKERS)}")
        elif importlib.util.find_spec(TRACKERS[tracker]) is None:
            problems.append(f"tracking.report_to: {tracker} is not installed (pip install {tracker})")

    model = cfg.model
    path = str(model.name_or_path)
    local = path.startswith((".", "/", "models/")) or Path(path).exists()
    if local and not Path(path).exists() and not model.get("kit"):
        problems.append(f"model.name_or_path: {path} does not exist (and model.kit is not set "
                        "to build it)")
    if not isinstance(model.get("add_pad_token", False), bool):
        problems.append(f"model.add_pad_token: {model.add_pad_token!r} is not true or false")

    launcher = cfg.launcher
    tool = launcher.get("tool", "local")
    if tool not in ("local", "accelerate", "torchrun"):
        problems.append(f"launcher.tool: unknown {tool!r}; choose from local, accelerate, torchrun")
    if tool == "accelerate":
        acc = CONF_DIR / "accelerate" / f"{launcher.accelerate_config}.yaml"
        if not acc.exists():
            problems.append(f"launcher.accelerate_config: {acc} does not exist")
    if tool != "local":
        for key in ("num_machines", "machine_rank", "main_port"):
            try:
                value = int(launcher[key])
            except (TypeError, ValueError):
                problems.append(f"launcher.{key}: {launcher[key]!r} is not an integer")
                continue
            if key == "main_port" and not 1 <= value <= 65535:
                problems.append(f"launcher.main_port: {value} is not a port (1-65535)")
        npp = launcher.get("nproc_per_node")
        if npp != "auto" and not str(npp).isdigit():
            problems.append(f"launcher.nproc_per_node: {npp!r} is not an integer or 'auto'")
    if problems:
        raise ConfigError("invalid config:\n- " + "\n- ".join(problems))


def to_plain(cfg: DictConfig) -> dict:
    """The fully resolved config as plain Python (no interpolations left)."""
    return OmegaConf.to_container(cfg, resolve=True)
