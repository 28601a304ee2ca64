"""Compose `conf/` with Hydra and check it before any model or GPU time is spent.

`compose(overrides)` is the only place Hydra runs: the parent process calls it once,
fixes the run directory and freezes the resolved config there (`train/rundir.py`);
workers read that file and never compose again (no per-rank run-directory race).

`validate(cfg)` gathers every problem (unknown TRL fields, unknown LoRA fields,
QLoRA without CUDA, a missing tracker package, bad stages, launcher values) and
raises one `ConfigError` listing them all.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import textwrap
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
STAGES = ("build", "train", "eval")
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class ConfigError(ValueError):
    """A config problem found before training starts; the message lists all of them."""


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The root config with command-line style overrides (`+exp=smoke`, `method.args.beta=0.1`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


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
        near = difflib.get_close_matches(key, sorted(valid), n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        listing = textwrap.fill(", ".join(sorted(valid)), width=96, initial_indent="    ",
                                subsequent_indent="    ")
        out.append(f"{where}.{key}: not a field of {kind}{hint}; valid fields:\n{listing}")
    return out


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming every problem; imports TRL/PEFT config classes, loads no model."""
    from train.methods import METHODS, config_fields

    problems: list[str] = []
    stages = list(cfg.get("stages") or [])
    bad = [s for s in stages if s not in STAGES]
    if bad:
        problems.append(f"stages: unknown {bad}; choose from {list(STAGES)}")

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
