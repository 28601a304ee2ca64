"""Dataset recipes: the rules that turn signal into SFT, preference and KTO examples.

A recipe is the composed `conf/data/NAME.yaml` node as a plain dict. `normalize`
fills every option the YAML leaves out from `DEFAULTS`, so the schema is this one
dict, and gathers every problem (unknown key, wrong type, bad value) into one
`RecipeError` before any SQL runs:

    >>> r = normalize({"name": "demo", "split": {"method": "user"}})
    >>> r["split"]["eval_fraction"], r["pref"]["min_edit_distance"]
    (0.1, 0.02)

Each option is documented where it is defined, in `conf/data/demo.yaml`.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

# The schema: every option with its default. Types are taken from the defaults,
# except where TYPES says otherwise (options whose default is None or a number).
DEFAULTS: dict[str, Any] = {
    "name": "recipe",
    "filters": {
        "sources": [],               # keep only interactions ingested with these source mappings ([] = all)
        "apps": [],                  # keep only these apps
        "tasks": [],                 # keep only these tasks
        "models": [],                # keep only outputs of these model_ids
        "users": [],                 # keep only these users
        "exclude_users": [],         # drop these users
        "since": None,               # ISO-8601, inclusive
        "until": None,               # ISO-8601, exclusive
        "min_prompt_chars": 1,       # characters over all prompt messages
        "max_prompt_chars": 200_000,
        "min_completion_chars": 1,   # the model output (and an edit's text)
        "max_completion_chars": 100_000,
    },
    "outcome": {
        "rate_accept_at": 4.0,       # score >= this: the rating is an accept
        "rate_reject_at": 2.0,       # score <= this: a reject; in between: not decisive
        "choose_as_outcome": False,  # a choice also accepts the chosen and rejects the other
        "accept_keeps_edit": True,   # an accept after an edit confirms the edit
        "trivial_edit": "ignore",    # an edit below pref.min_edit_distance: ignore (not decisive) | accept
    },
    "sft": {
        "enabled": True,
        "from_accept": True,         # accepted completions
        "from_edit": True,           # prompt -> the user's edited text
    },
    "pref": {
        "enabled": True,
        "from_edit": True,           # chosen = edit, rejected = original
        "min_edit_distance": 0.02,   # normalized Levenshtein below this: a trivial edit, no pair
        "from_choose": True,         # explicit choices between two candidates
        "choose_same_prompt": True,  # a choice pairs only outputs of the same normalized prompt
        "from_regen": True,          # accepted vs rejected outputs of the same normalized prompt
        "regen_within": "prompt",    # prompt | user | session: where regenerations are paired
        "max_regen_pairs": 4,        # per normalized prompt (group)
    },
    "kto": {
        "enabled": True,
        "desirable_weight": None,    # None: from TRL's guidance on the train split's class counts
        "undesirable_weight": None,
    },
    "caps": {
        "dedup": True,               # exact de-duplication of (normalized prompt, texts)
        "per_user": None,            # at most this many examples per user and kind (None = no cap)
    },
    "split": {
        "method": "hash",            # hash (by normalized prompt) | time | user | session
        "eval_fraction": 0.1,
        "cutoff": None,              # time: ISO-8601; None = the newest eval_fraction of interactions
        "seed": 0,
        "decontaminate": "drop_train",   # a prompt in both splits is dropped from: drop_train | drop_eval
        "benchmark_prompts": None,   # file of prompts never to train on (.txt lines or .jsonl "prompt")
    },
    "privacy": {
        "retention_days": None,      # None: the store's `retention_days` setting, if any
        "as_of": None,               # reference time for retention (ISO-8601); None = now
        "redact_pii": True,
    },
}

TYPES: dict[str, tuple[type, ...]] = {
    "filters.since": (str, datetime, type(None)),
    "filters.until": (str, datetime, type(None)),
    "outcome.rate_accept_at": (int, float),
    "outcome.rate_reject_at": (int, float),
    "pref.min_edit_distance": (int, float),
    "kto.desirable_weight": (int, float, type(None)),
    "kto.undesirable_weight": (int, float, type(None)),
    "caps.per_user": (int, type(None)),
    "split.eval_fraction": (int, float),
    "split.cutoff": (str, datetime, type(None)),
    "split.benchmark_prompts": (str, type(None)),
    "privacy.retention_days": (int, float, type(None)),
    "privacy.as_of": (str, datetime, type(None)),
}

CHOICES = {
    "split.method": {"hash", "time", "user", "session"},
    "split.decontaminate": {"drop_train", "drop_eval"},
    "pref.regen_within": {"prompt", "user", "session"},
    "outcome.trivial_edit": {"ignore", "accept"},
}


class RecipeError(ValueError):
    """A recipe with problems; the message lists all of them, one per line."""


def normalize(recipe: dict | None) -> dict:
    """The recipe with every default filled in; raises RecipeError listing all problems."""
    recipe = dict(recipe or {})
    problems: list[str] = []
    out = _merge(DEFAULTS, recipe, "", problems)
    _check_values(out, problems)
    if problems:
        name = recipe.get("name", "?")
        raise RecipeError(f"recipe {name!r} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return out


def _merge(default: dict, given: dict, prefix: str, problems: list[str]) -> dict:
    out = copy.deepcopy(default)
    for key, value in given.items():
        path = f"{prefix}{key}"
        if key not in default:
            problems.append(f"{path}: unknown option (known: {', '.join(sorted(default))})")
            continue
        if isinstance(default[key], dict):
            if not isinstance(value, dict):
                problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
                continue
            out[key] = _merge(default[key], value, path + ".", problems)
            continue
        allowed = TYPES.get(path) or (type(default[key]),)
        if isinstance(value, bool) and bool not in allowed:
            ok = False
        elif isinstance(value, tuple) and list in allowed:
            value, ok = list(value), True
        else:
            ok = isinstance(value, allowed)
        if not ok:
            names = "/".join("null" if t is type(None) else t.__name__ for t in allowed)
            problems.append(f"{path}: expected {names}, got {type(value).__name__} {value!r}")
            continue
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            problems.append(f"{path}: expected a list of strings, got {value!r}")
            continue
        out[key] = value
    return out


def _check_values(r: dict, problems: list[str]) -> None:
    for path, allowed in CHOICES.items():
        section, key = path.split(".")
        if r[section][key] not in allowed:
            problems.append(f"{path}: {r[section][key]!r} is not one of {sorted(allowed)}")
    for path in ("filters.since", "filters.until", "split.cutoff", "privacy.as_of"):
        section, key = path.split(".")
        value = r[section][key]
        if isinstance(value, str):
            try:
                r[section][key] = datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
            except ValueError:
                problems.append(f"{path}: {value!r} is not an ISO-8601 time")
        elif isinstance(value, datetime):
            r[section][key] = value.isoformat()
    if not 0.0 <= r["split"]["eval_fraction"] < 1.0:
        problems.append(f"split.eval_fraction: {r['split']['eval_fraction']} is not in [0, 1)")
    if not 0.0 <= r["pref"]["min_edit_distance"] <= 1.0:
        problems.append(f"pref.min_edit_distance: {r['pref']['min_edit_distance']} is not in [0, 1]")
    if r["outcome"]["rate_reject_at"] >= r["outcome"]["rate_accept_at"]:
        problems.append("outcome.rate_reject_at must be below outcome.rate_accept_at "
                        f"({r['outcome']['rate_reject_at']} >= {r['outcome']['rate_accept_at']})")
    if r["pref"]["max_regen_pairs"] < 0:
        problems.append("pref.max_regen_pairs: must be >= 0")
    if r["caps"]["per_user"] is not None and r["caps"]["per_user"] < 1:
        problems.append("caps.per_user: must be >= 1 or null")
    for key in ("desirable_weight", "undesirable_weight"):
        w = r["kto"][key]
        if w is not None and w <= 0:
            problems.append(f"kto.{key}: must be > 0 or null")
    f = r["filters"]
    for lo, hi in (("min_prompt_chars", "max_prompt_chars"), ("min_completion_chars", "max_completion_chars")):
        if f[lo] > f[hi]:
            problems.append(f"filters.{lo} ({f[lo]}) is above filters.{hi} ({f[hi]})")
    if not isinstance(r["name"], str) or not r["name"]:
        problems.append("name: must be a non-empty string")
