"""The eval, judge and gate settings: their schema, written once.

Registered in Hydra's ConfigStore (`register_schemas`), so `conf/eval/default.yaml`,
`conf/eval/judge/*.yaml` and `conf/gate/*.yaml` start from these defaults and set
only what differs; a misspelled key fails at compose time (`problems`).

    python -m eval run +exp=NAME eval.batch_size=32 gate.margin=0.02
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from signals.config import check_keys, register


@dataclass
class Generation:
    """Win-rate answers: the same prompts, seed and decoding for both models."""
    split: str = "sft"                 # prompts come from this kind's eval split
    max_prompts: int = 64
    max_new_tokens: int = 64
    do_sample: bool = False            # greedy; with sampling each batch reseeds with seed + batch index
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16


@dataclass
class Bootstrap:
    resamples: int = 1000              # paired bootstrap resamples
    seed: int = 0
    confidence: float = 0.95           # interval level; also the MDE's significance level
    power: float = 0.8                 # MDE: smallest effect detected with this probability


@dataclass
class Registry:
    record: bool = True                # write runs / eval_results / decisions into ${store}
    pointer_dir: str = "${output_root}"    # promote writes {pointer_dir}/production.json
    mlflow: bool = False               # also log decisions to MLflow (only if installed)


@dataclass
class Latency:
    """Time to first token, tokens/s and peak memory of each model on the win-rate prompts.

    The first `prompts` prompts are answered one at a time after one untimed warm-up
    answer, with the same decoding and max_new_tokens as the win-rate answers; needs the
    `winrate` group (its prompts). 0 = not measured.
    """
    prompts: int = 8
    memory_sample_s: float = 0.005     # CPU: process RSS (psutil) is sampled this often


@dataclass
class Engine:
    """An OpenAI-compatible server that writes the win-rate answers (and is timed) instead
    of HF generate in this process; scoring still loads each model here."""
    url: str | None = None             # e.g. http://127.0.0.1:8000 (POST {url}/v1/chat/completions); null = HF generate
    baseline_model: str | None = None  # "model" sent for the baseline; null = its path (folder / hub id, production's model_path)
    candidate_model: str | None = None     # null = the run's served folder (runs.model_path)
    concurrency: int = 4               # requests in flight for the answers past the latency sample
    timeout_s: float = 300.0           # per request (the first one may load the model)
    api_key_env: str | None = None     # bearer token read from this environment variable; null = none sent


@dataclass
class Calibration:
    """`python -m eval calibrate`: judges and offline metrics scored against the users'
    verdicts in the eval split (eval/calibrate.py)."""
    judges: list[Any] = field(default_factory=list)   # more judge nodes (as eval.judge) scored beside eval.judge
    models: list[str] = field(default_factory=lambda: ["baseline"])   # log-prob margins of: baseline | candidate
    max_pairs: int | None = 500        # preference pairs scored (null = all); also caps the accept/reject rows
    bins: int = 10                     # reliability curve and ECE of the reward model: equal-width bins
    record: bool = True                # write the figures into ${store} (calibrations table)


@dataclass
class EvalSettings:
    """Baseline and candidate are scored in the same job with these same settings."""
    candidate: str | None = None       # run dir; null = newest under ${output_root}/${exp_name}/
    baseline: str | None = None        # model folder / hub id, or "production"; null = the run's base model
    snapshot: str | None = None        # snapshot dir; null = the run's snapshot (manifest snapshot_path)
    metrics: list[str] = field(default_factory=lambda: ["preference", "likelihood", "kto", "winrate"])
    device: str = "auto"               # auto = cuda when available, else cpu
    batch_size: int = 16               # scoring batch (same for both models)
    max_length: int = 512              # tokens per example; the oldest prompt tokens are dropped first
    max_examples: int | None = None    # cap per eval split (null = all)
    generation: Generation = field(default_factory=Generation)
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    registry: Registry = field(default_factory=Registry)
    latency: Latency = field(default_factory=Latency)
    engine: Engine = field(default_factory=Engine)
    judge: Any = None                  # eval/judge/: rules | reward_model | openai
    calibration: Calibration = field(default_factory=Calibration)


@dataclass
class RulesJudge:
    """Task rules: an answer's score is the share of applicable checks it passes.

    Each check sets exactly one of regex | json | callable ("package.module:function"
    called as fn(prompt_messages, answer, row) -> bool; it imports and runs that code, so
    a config naming it is trusted input); `tasks: [...]` limits a check to those tasks.
    """
    name: str = "rules"
    checks: list[Any] = field(default_factory=lambda: [
        {"name": "nonempty", "regex": r"\S"},
        {"name": "ends_cleanly", "regex": r'[.!?`)}\]"]\s*$'},   # not cut off at max_new_tokens
    ])


@dataclass
class RewardModelJudge:
    """A `method=reward` run dir or a sequence-classification folder: higher reward wins."""
    name: str = "reward_model"
    path: str | None = None
    batch_size: int = 16
    max_length: int = 512
    tie_epsilon: float = 0.0           # rewards closer than this count as a tie
    device: str | None = None


@dataclass
class OpenAIJudge:
    """Any OpenAI-compatible chat endpoint; each pair is judged in both orders."""
    name: str = "openai"
    base_url: str = "${oc.env:OPENAI_BASE_URL,https://api.openai.com/v1}"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"    # the key is read from this environment variable, never from config
    template: str | None = None        # null = eval/judges.py DEFAULT_TEMPLATE ({prompt}, {answer_a}, {answer_b})
    temperature: float = 0.0
    max_tokens: int = 8
    timeout_s: float = 60.0
    max_retries: int = 4               # on 429, 5xx and connection errors
    backoff_s: float = 1.0             # waits 1, 2, 4, 8 s
    cache: bool = True


@dataclass
class LatencyGate:
    """Candidate / baseline ratios of the latency figures, each null (not gated) or a limit.
    A point comparison of one measurement each (no interval): a fail rejects."""
    max_ttft_p95_ratio: float | None = None    # latency_ttft_p95_ms: candidate at most this x baseline
    max_p95_ratio: float | None = None         # latency_p95_ms (whole answer)
    min_tokens_per_s_ratio: float | None = None    # tokens_per_s: candidate at least this x baseline
    max_peak_memory_ratio: float | None = None     # peak_memory_mb


@dataclass
class JudgeGate:
    """A gated judge metric (winrate, judge_score) needs its judge calibrated against the users
    (`python -m eval calibrate`): below the floor, uncalibrated or calibrated on old data the
    decision is inconclusive. Both null (off) by default."""
    min_agreement: float | None = None     # the judge's latest agreement with user verdicts must be >= this
    max_age_days: float | None = None      # ... on data (newest feedback) at most this many days old


@dataclass
class PowerGate:
    """Power before training (signals/power.py): what the eval split can detect for `primary`."""
    effect: float | None = None        # the difference worth detecting, in the primary metric's units; null = MDE only
    sd: float | None = None            # per-example sd of the primary's difference; null = signals.power.DEFAULT_SD
    on_short: str = "warn"             # the scheduled job when the eval split cannot detect `effect`: warn | refuse


@dataclass
class GateSettings:
    """Promote only when the primary metric's lower bound clears `margin` and no guard regresses."""
    primary: str = "preference_accuracy"
    margin: float = 0.0
    min_eval_size: int = 20            # fewer examples on any gated metric: inconclusive
    guards: dict[str, float] = field(default_factory=dict)   # metric: allowed regression (default.yaml: sft_loglik 0.5)
    auto_promote: bool = True          # move `production` when the decision is promote
    latency: LatencyGate = field(default_factory=LatencyGate)   # off by default: timings are noisy
    judge: JudgeGate = field(default_factory=JudgeGate)         # off by default: needs `eval calibrate` first
    power: PowerGate = field(default_factory=PowerGate)


JUDGES = {"rules": RulesJudge, "reward_model": RewardModelJudge, "openai": OpenAIJudge}


def register_schemas() -> None:
    """`eval/schema`, `eval/judge/schema_<name>` and `gate/schema` for the YAML files' defaults."""
    register("eval", "schema", EvalSettings)
    register("gate", "schema", GateSettings)
    for name, node in JUDGES.items():
        register("eval/judge", f"schema_{name}", node)


def problems(cfg) -> list[str]:
    """Unknown keys in `eval`, its judge and `gate` of a composed config."""
    out = []
    if cfg.get("eval") is not None:
        out += check_keys(cfg.eval, EvalSettings, "eval")
        judge = cfg.eval.get("judge")
        if judge is not None:
            node = JUDGES.get(str(judge.get("name")))
            if node is None:
                out.append(f"eval.judge.name: unknown judge {judge.get('name')!r}; choose from {sorted(JUDGES)}")
            else:
                out += check_keys(judge, node, "eval.judge")
    if cfg.get("gate") is not None:
        out += check_keys(cfg.gate, GateSettings, "gate")
        power = cfg.gate.get("power") or {}
        if power.get("on_short", "warn") not in ("warn", "refuse"):
            out.append(f"gate.power.on_short: {power.get('on_short')!r} is not one of ['refuse', 'warn']")
        floor = (cfg.gate.get("judge") or {}).get("min_agreement")
        if floor is not None and not 0 <= float(floor) <= 1:
            out.append(f"gate.judge.min_agreement: {floor} is not in [0, 1]")
    return out
