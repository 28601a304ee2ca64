"""Dataset recipes: the rules that turn signal into SFT, preference and KTO examples.

The dataclasses below are the recipe's schema, written once: every option with its
type, default and meaning. They are registered as `conf/data/base` (Hydra's
ConfigStore), so each `conf/data/NAME.yaml` starts with `defaults: [base, _self_]`
and sets only what differs; a misspelled option fails when the config is composed.
`normalize` checks a recipe given as a plain dict the same way and also checks the
values (choices, ranges, times), gathering every problem into one `RecipeError`
before any SQL runs:

    >>> r = normalize({"name": "demo", "split": {"method": "user"}})
    >>> r["split"]["eval_fraction"], r["pref"]["min_edit_distance"]
    (0.1, 0.02)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from signals.config import check_keys, register


@dataclass
class Filters:
    """Interactions outside these are excluded, each counted by reason."""
    sources: list[str] = field(default_factory=list)   # ingested with these source mappings ([] = all)
    apps: list[str] = field(default_factory=list)      # keep only these apps
    tasks: list[str] = field(default_factory=list)     # keep only these tasks
    models: list[str] = field(default_factory=list)    # keep only outputs of these model_ids
    users: list[str] = field(default_factory=list)     # keep only these users
    exclude_users: list[str] = field(default_factory=list)   # drop these users
    since: str | None = None           # ISO-8601, inclusive (interaction time)
    until: str | None = None           # ISO-8601, exclusive
    min_prompt_chars: int = 1          # characters over all prompt messages
    max_prompt_chars: int = 200_000
    min_completion_chars: int = 1      # the model output (and an edit's text)
    max_completion_chars: int = 100_000


@dataclass
class Outcome:
    """The outcome of an interaction is its latest decisive feedback."""
    rate_accept_at: float = 4.0        # a rating >= this is an accept (1-5 stars; 1 for thumbs up/down)
    rate_reject_at: float = 2.0        # a rating <= this is a reject; in between it is not decisive
    choose_as_outcome: bool = False    # a choice also accepts the chosen and rejects the other (KTO/SFT)
    accept_keeps_edit: bool = True     # an accept after an edit confirms the edit (the outcome stays edit)
    trivial_edit: str = "ignore"       # an edit below pref.min_edit_distance: ignore (not decisive) | accept


@dataclass
class Sft:
    """messages = prompt + assistant turn."""
    enabled: bool = True
    from_accept: bool = True           # accepted completions
    from_edit: bool = True             # prompt -> the user's edited text


@dataclass
class Pref:
    """prompt / chosen / rejected."""
    enabled: bool = True
    from_edit: bool = True             # chosen = edit, rejected = original
    min_edit_distance: float = 0.02    # normalized Levenshtein (whitespace collapsed) below this: trivial
    from_choose: bool = True           # explicit choices between two candidates
    choose_same_prompt: bool = True    # a choice pairs two outputs only if their normalized prompts match
    from_regen: bool = True            # accepted vs rejected outputs of the same normalized prompt
    regen_within: str = "prompt"       # prompt | user | session: where regenerations are paired
    max_regen_pairs: int = 4           # pairs per normalized prompt (group)


@dataclass
class Kto:
    """prompt / completion / label: accept -> desirable, reject -> undesirable, edit -> both."""
    enabled: bool = True
    desirable_weight: float | None = None     # null: from TRL's guidance on the train split's class counts
    undesirable_weight: float | None = None


@dataclass
class Caps:
    dedup: bool = True                 # exact de-duplication of (normalized prompt, texts[, label]) per kind
    per_user: int | None = None        # at most this many examples per user and kind (null = no cap)


@dataclass
class Split:
    method: str = "hash"               # hash (of the normalized prompt) | time | user | session
    eval_fraction: float = 0.1
    eval_count: int | None = None      # hold out by count instead: at least this many kept interactions
                                       # (whole split groups; time: the newest); null = by eval_fraction
    cutoff: str | None = None          # time: ISO-8601; null = the newest eval_fraction (or eval_count) of interactions
    seed: int = 0
    decontaminate: str = "drop_train"  # a prompt left in both splits is dropped from: drop_train | drop_eval
    benchmark_prompts: str | None = None   # prompts never to train on (.txt lines or .jsonl "prompt")


@dataclass
class Privacy:
    """Opted-out and forgotten users are always excluded."""
    retention_days: float | None = None    # null: the store's retention_days setting (signals retain --save)
    as_of: str | None = None           # reference time for retention (ISO-8601); null = now
    redact_pii: bool = True            # signals.pii on every exported text; counts in the manifest


@dataclass
class Recipe:
    """A dataset recipe (`conf/data/NAME.yaml`)."""
    name: str = "recipe"
    filters: Filters = field(default_factory=Filters)
    outcome: Outcome = field(default_factory=Outcome)
    sft: Sft = field(default_factory=Sft)
    pref: Pref = field(default_factory=Pref)
    kto: Kto = field(default_factory=Kto)
    caps: Caps = field(default_factory=Caps)
    split: Split = field(default_factory=Split)
    privacy: Privacy = field(default_factory=Privacy)


def register_schema() -> None:
    """`conf/data/base`: the schema every recipe file starts from."""
    register("data", "base", Recipe)


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
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    recipe = dict(recipe or {})
    name = recipe.get("name", "?")
    problems = check_keys(recipe, Recipe, "")
    schema = OmegaConf.structured(Recipe)
    given = _known_only(_plain(recipe), DEFAULTS)
    for path, value in list(_leaves(given)):           # type-check leaf by leaf, so every problem is listed
        try:
            OmegaConf.update(OmegaConf.structured(Recipe), path, value, merge=True)
        except (OmegaConfBaseException, ValueError) as e:
            first = str(e).strip().splitlines()[0]
            problems.append(f"{path}: {first}")
            _drop(given, path)
    merged = OmegaConf.merge(schema, given)
    out: dict[str, Any] = OmegaConf.to_container(merged, resolve=True)
    _check_values(out, problems)
    if problems:
        raise RecipeError(f"recipe {name!r} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return out


def _known_only(given: dict, schema: dict) -> dict:
    return {k: _known_only(v, schema[k]) if isinstance(v, dict) and isinstance(schema[k], dict) else v
            for k, v in given.items() if k in schema}


def _leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _drop(d: dict, path: str) -> None:
    *parents, key = path.split(".")
    for p in parents:
        d = d[p]
    d.pop(key, None)


def _plain(value):
    """datetimes (YAML timestamps, Python callers) as ISO strings; tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


DEFAULTS: dict[str, Any] = asdict(Recipe())


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
    count = r["split"]["eval_count"]
    if count is not None and count < 1:
        problems.append(f"split.eval_count: {count} must be >= 1 or null")
    if count is not None and r["split"]["method"] == "time" and r["split"]["cutoff"] is not None:
        problems.append("split.eval_count and split.cutoff both choose the time split's eval part: set one")
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
    problem = name_problem(r["name"])
    if problem:
        problems.append(f"name: {r['name']!r}: {problem} (it names the snapshot folder)")


# A name that becomes a file or folder name (a recipe's snapshot folder, an alias's pointer
# file): a letter or digit, then up to 63 letters, digits, '_', '.' or '-'; never '.' or '..'.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SAFE_NAME_RULE = ("must be 1-64 characters: a letter or digit, then letters, digits, '_', '.' or '-' "
                  "(no '/', no '..': it becomes a path)")


def name_problem(name) -> str | None:
    """Why `name` cannot become a file or folder name (SAFE_NAME), or None when it can."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        return SAFE_NAME_RULE
    return None
