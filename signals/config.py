"""Compose `conf/` with Hydra: one function for every command, errors as one line.

    cfg = compose(["data=demo", "split.method=user"], config_name="build", schemas=...)

Schemas are dataclasses registered in Hydra's ConfigStore by the layer that owns them
(`register`): a recipe file says `defaults: [base, _self_]` and gets every option with
its default and type from `signals.recipe.Recipe`, so the schema is written once. A
misspelled key fails at compose time, with or without `+`, naming the close matches
and the valid keys; it never advises adding the key. Hydra's own exceptions become
`ConfigError`, whose message is one line a user can act on (the CLI exits 2).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# keys a command may be given for any node, with the set of valid keys below it
KnownKeys = Callable[[str], Iterable[str] | None]


class ConfigError(ValueError):
    """A config problem found before any work starts; the message says what to change."""


def register(group: str | None, name: str, node) -> None:
    """Put a schema (a dataclass) into Hydra's ConfigStore as `group/name`."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group=group, name=name, node=node)


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """' (did you mean a, b?)' for the close matches of `key` among `valid`, else ''."""
    near = difflib.get_close_matches(key, sorted(set(valid)), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def unknown_key(path: str, valid: Iterable[str]) -> str:
    """The one message for a key that is not in its node, used by every check."""
    parent, _, key = path.rpartition(".")
    valid = sorted(set(valid))
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(f'{parent}.{n}' if parent else n for n in near)}?)" if near else ""
    listing = ", ".join(valid) if len(valid) <= 40 else ", ".join(valid[:40]) + f", ... ({len(valid)} in all)"
    return f"unknown key {path!r}{hint}; valid keys{' of ' + parent if parent else ''}: {listing}"


def schema_keys(schema) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def check_keys(node, schema, path: str) -> list[str]:
    """Every key of `node` that `schema` (a dataclass) does not define, as messages."""
    if not isinstance(node, DictConfig | dict):
        return []
    fields = {f.name: f for f in dataclasses.fields(schema)}
    problems = []
    for key in node.keys():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(unknown_key(where, fields))
            continue
        sub = fields[key].type
        sub = sub if dataclasses.is_dataclass(sub) else _dataclass_of(schema, key)
        if sub is not None:
            problems += check_keys(node[key], sub, where)
    return problems


def _dataclass_of(schema, key: str):
    """The dataclass type of field `key` when annotations are strings (PEP 563)."""
    import typing

    try:
        hint = typing.get_type_hints(schema).get(key)
    except Exception:  # noqa: BLE001 - an unresolvable hint is just not a nested schema
        return None
    return hint if dataclasses.is_dataclass(hint) else None


def compose(overrides: Iterable[str] = (), *, config_name: str = "config",
            schemas: dict[str, type] | None = None, root_keys: Iterable[str] | None = None,
            known: KnownKeys | None = None, config_dir: Path = CONF_DIR) -> DictConfig:
    """The config `config_name` with Hydra overrides; `ConfigError` on any problem.

    `schemas` maps a node path ('' for the root) to the dataclass its keys must belong
    to; `root_keys` (when given) are the only top-level keys allowed; `known(path)` adds
    valid keys for a node whose schema is elsewhere (e.g. a TRL config's fields).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(explain(e, overrides, config_name=config_name, known=known,
                                  config_dir=config_dir)) from None
    problems = []
    if root_keys is not None:
        allowed = set(root_keys)
        problems += [unknown_key(str(k), allowed) for k in cfg.keys() if k not in allowed]
    for path, schema in (schemas or {}).items():
        node = OmegaConf.select(cfg, path) if path else cfg
        problems += check_keys(node, schema, path)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


def explain(e: Exception, overrides: list[str], *, config_name: str, known: KnownKeys | None,
            config_dir: Path) -> str:
    """Hydra's exception as one actionable line."""
    msg = str(e)
    m = re.search(r"Could not override '([^']+)'", msg)
    if m:
        path = m.group(1)
        if "No match in the defaults list" in msg or (path == "exp" and "." not in path):
            return f"{path}=...: `{path}` is not set by default; select it with +{path}=NAME"
        parent, _, key = path.rpartition(".")
        valid = set(_node_keys(parent, overrides, path, config_name, config_dir))
        valid |= set((known(parent) if known else None) or ())
        if path == "exp":
            return "select an experiment with +exp=NAME (not exp=NAME)"
        return unknown_key(path, valid)
    m = re.search(r"Could not find '([^']+)/([^']+)'", msg)
    if m:
        group, option = m.group(1), m.group(2)
        options = sorted(p.stem for p in (config_dir / group).glob("*.yaml")) if (config_dir / group).is_dir() else []
        return (f"{group}={option}: no such option in conf/{group}/{did_you_mean(option, options)}; "
                f"options: {', '.join(options)}")
    m = re.search(r"An item is already at '([^']+)'", msg)
    if m:
        return f"+{m.group(1)}=...: {m.group(1)} is already set; drop the '+' to change it"
    m = re.search(r"Error parsing override '([^']*)'", msg)
    if m:
        return f"{m.group(1)!r} is not an override: write KEY=VALUE (e.g. seed=1)"
    m = re.search(r"Error merging override (\S+)", msg)
    if m:
        cause = e.__cause__ or e
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        return f"{m.group(1)}: {first}"
    cause = e.__cause__ or e
    lines = [ln.strip() for ln in str(cause).strip().splitlines() if ln.strip()] or [type(cause).__name__]
    detail = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    key = getattr(cause, "full_key", None) or next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), None)
    m = re.search(r"In '([^']+)'", msg)
    where = f"conf/{m.group(1)}.yaml" if m else f"conf/{config_name}.yaml"
    return f"{where}: {key + ': ' if key else ''}{detail}"


def _node_keys(parent: str, overrides: list[str], bad: str, config_name: str, config_dir: Path) -> list[str]:
    """The keys of node `parent` composed without the failing override (best effort)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    rest = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != bad]
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=rest)
    except Exception:  # noqa: BLE001 - another override is wrong too: no hint, the message still names the key
        return []
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
