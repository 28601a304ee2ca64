"""The whole config tree, composed once for `python -m train` and the scheduled job.

Every layer registers its schema (signals: the recipe; eval: eval, judges, gate; this
module: the scheduled job and the store seeding), then `signals.config.compose` runs
Hydra and checks every node: a misspelled key, with or without `+`, fails here naming
the close matches. Keys of TRL configs (`method.args`) and of LoRA (`peft`) are
checked against those libraries by `train.config.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from eval.verify import Online
from signals.config import CONF_DIR, ConfigError, check_keys, register, unknown_key


@dataclass
class Nightly:
    """The scheduled job (`python -m scripts nightly`)."""
    landing: str = "data/landing"      # folder the product writes its logs into
    min_new_interactions: int = 50     # fewer new interactions since the last trained snapshot: skip
    lock: str = "${output_root}/nightly.lock"   # an flock: two runs never overlap, a crash frees it
    dashboard: str | None = "dashboard"         # where the static dashboard is written (null: skip)
    simulate: Any = None               # demo only: {days, per_day, seed, flip} fills an empty landing folder


@dataclass
class SeedIngest:
    paths: list[str] = field(default_factory=list)
    source: str | None = None          # a mapping in conf/source/


@dataclass
class SeedStore:
    """Fill a missing store on first use: the product simulator and/or files (ingest stage)."""
    simulate: Any = None               # {days, per_day, seed}: scripts/simulate.py
    ingest: SeedIngest | None = None


ROOT_KEYS = ("model", "method", "peft", "data", "eval", "gate", "launcher", "nightly", "exp_name", "seed",
             "stages", "store", "snapshot_root", "snapshot", "output_root", "run_id", "run_dir", "resume",
             "then", "save_merged", "tracking", "seed_store", "resolved", "online")
METHOD_KEYS = ("name", "kind", "args")
TRACKING_KEYS = ("report_to", "project")


def register_schemas() -> None:
    import signals.fetch  # noqa: F401  (registers the ${real_data:NAME} resolver the real-data exps use)
    from eval.settings import register_schemas as register_eval
    from signals.recipe import register_schema as register_recipe

    register_recipe()
    register_eval()
    register("nightly", "default", Nightly)
    register("online", "default", Online)


def group_keys(group: str) -> set[str]:
    """Every key any option of `conf/<group>/` sets: the valid keys of that node."""
    import yaml

    keys: set[str] = set()
    for p in (CONF_DIR / group).glob("*.yaml"):
        data = yaml.safe_load(p.read_text()) or {}
        keys |= {k for k in data if k != "defaults"}
    return keys


def known_keys(path: str) -> set[str] | None:
    """Valid keys of a node whose schema lives in a library (TRL) or in the YAML options."""
    if path.endswith(".args") and path.split(".")[0] in ("method", "then"):
        from train.methods import METHODS, config_fields

        return set().union(*(config_fields(n) for n in METHODS))
    if path in ("model", "launcher"):
        return group_keys(path)
    return None


def _open_args(override: str) -> str:
    """`method.args.K=V` may set any field of the TRL config, listed in the YAML or not: `++` adds
    or replaces it, and `train.config.validate` then checks it against the TRL class (close matches)."""
    key = override.split("=", 1)[0]
    parts = key.split(".")
    if "=" in override and not key.startswith(("+", "~")) and len(parts) > 2 and (
            parts[:2] == ["method", "args"] or (parts[0] == "then" and parts[2:3] == ["args"])):
        return "++" + override
    return override


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The root config with overrides (`+exp=smoke`, `method.args.beta=0.1`); ConfigError on any problem."""
    from eval.settings import problems as eval_problems
    from signals.config import compose as compose_tree
    from signals.recipe import Recipe

    register_schemas()
    overrides = [_open_args(o) for o in overrides]
    cfg = compose_tree(overrides, schemas={"data": Recipe, "nightly": Nightly, "seed_store": SeedStore,
                                                          "online": Online},
                       root_keys=ROOT_KEYS, known=known_keys)
    problems = eval_problems(cfg)
    for group in ("model", "launcher"):
        valid = group_keys(group)
        problems += [unknown_key(f"{group}.{k}", valid) for k in cfg[group] if k not in valid]
    for where, node in [("method", cfg.method), *((f"then.{k}", v) for k, v in (cfg.get("then") or {}).items())]:
        problems += [unknown_key(f"{where}.{k}", METHOD_KEYS) for k in node if k not in METHOD_KEYS]
    problems += [unknown_key(f"tracking.{k}", TRACKING_KEYS) for k in cfg.get("tracking") or {}
                 if k not in TRACKING_KEYS]
    problems += check_keys(cfg.get("seed_store") or {}, SeedStore, "seed_store")
    if cfg.get("online") is not None:
        from eval.verify import problems as online_problems

        problems += online_problems(cfg.online)
    from scripts.stages import STAGES

    bad = [s for s in cfg.get("stages") or [] if s not in STAGES]
    if bad:
        problems.append(f"stages: unknown {bad}; choose from {list(STAGES)}")
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg
