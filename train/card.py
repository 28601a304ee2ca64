"""The model card of a run: a `huggingface_hub.ModelCard`, ready to push as it is.

    from train.card import write_card
    write_card(run_dir, manifest)                # after training
    write_card(run_dir, manifest, evaluation)    # again after the gate (eval.harness.evaluate's dict)

The metadata block is built by `ModelCardData` (so every value is valid, quoted YAML):
`base_model` (only a hub id, never a local path), `library_name` (peft for an
adapter, else transformers), `tags`, `datasets` (the snapshot version), `license`
when known, and, once evaluated, the gate's figures as `model-index` (one
`EvalResult` per gate metric, the candidate's value). The body says what the run
is and how to load it, then the gate's decision and figures, then TRL's own
training-time metrics, labelled as such.

The card is written to `run_dir/README.md` and, when those folders exist, to
`run_dir/adapter/README.md` and `run_dir/model/README.md`; a second call replaces
all of them. Nothing here touches the network (no `validate`, no `push_to_hub`).
`evaluation` is a plain dict: eval is a layer above train and is never imported.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("adapter", "model")
# owner/name, as the hub spells repo ids; a local relative path can look the same,
# so a string that names an existing folder is never taken for one.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SKIP_TRL = {"resumed_from", "base_model_commit"}

# What each gate metric measures (eval/harness.py computes them; all higher-is-better).
MEASURES = {
    "preference_accuracy": "share of held-out preference pairs where the model gives the chosen "
                           "answer a higher log-probability than the rejected one",
    "preference_accuracy_norm": "the same, with per-token (length-normalised) log-probabilities",
    "preference_margin": "mean log p(chosen) - log p(rejected), nats per answer",
    "preference_margin_norm": "mean per-token log p(chosen) - log p(rejected), nats per token",
    "sft_loglik": "mean per-token log-likelihood of answers users accepted or wrote (nats)",
    "kto_auc": "AUC of per-token log-likelihood separating desirable from undesirable answers "
               "(0.5 = chance)",
    "winrate": "share of prompts where the judge prefers the candidate's answer (ties count half; "
               "the baseline column is the 0.5 reference)",
    "judge_score": "mean judge score of the generated answers",
}

REWARD_ACCURACY_NOTE = (
    "TRL's `rewards/accuracies` is the share of its eval pairs where the policy's implicit reward "
    "ranks chosen above rejected; for DPO that reward is β·log(π/π_ref), a log-ratio against the "
    "frozen reference model (ORPO's is β times the policy's mean per-token log-probability; KTO "
    "logs none). It can therefore be high while the gate's `preference_accuracy` (does each model "
    "give the chosen answer a higher absolute log-probability than the rejected one, on held-out "
    "user signal) is low."
)


# ----------------------------------------------------------------------------- base model


def _local_dir(name: str) -> Path | None:
    """The folder a model name refers to on this machine, if any (cwd, then the repo root)."""
    p = Path(name).expanduser()
    for candidate in ([p] if p.is_absolute() else [Path.cwd() / p, ROOT / p]):
        if candidate.is_dir():
            return candidate
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _frozen_model_node(run_dir: Path) -> dict:
    """The `model` node of the run's frozen config.yaml ({} when absent)."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    node = cfg.get("model") if isinstance(cfg, dict) else None
    return node if isinstance(node, dict) else {}


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and HUB_ID.match(str(name)) is not None and _local_dir(str(name)) is None


def base_model_info(run_dir: Path, manifest: dict) -> dict:
    """{"name": as trained from, "hub_id": hub id or None, "local": bool, "license": str|None}.

    A hub id comes from, in order: the manifest's `base_model_hub_id`; `base_model`
    itself when it is a hub id and no local folder (nor an offline kit) by that name;
    for a local folder, `config.json`'s `_name_or_path` when it looks like a hub id,
    then `SOURCE.json`'s `model` (written by `python -m train fetch-model`).
    """
    name = str(manifest.get("base_model") or "")
    kit = _frozen_model_node(run_dir).get("kit")
    folder = _local_dir(name) if name else None
    local = folder is not None or bool(kit) or not HUB_ID.match(name)
    source = _read_json(folder / "SOURCE.json") if folder else {}
    hub_id = manifest.get("base_model_hub_id")
    if not hub_id and not local:
        hub_id = name
    if not hub_id and folder is not None:
        for guess in (_read_json(folder / "config.json").get("_name_or_path"), source.get("model")):
            if _is_hub_id(guess):
                hub_id = str(guess)
                break
    lic = manifest.get("license") or source.get("license")
    return {"name": name, "hub_id": str(hub_id) if hub_id else None, "local": local,
            "license": str(lic).lower() if lic else None}


# ----------------------------------------------------------------------------- formatting


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt(x, signed: bool = False) -> str:
    v = _num(x)
    if v is None:
        return "n/a"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _fmt_trl(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    f = _num(v)
    return f"{f:.4g}" if f is not None else str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _gate_order(evaluation: dict) -> list[str]:
    metrics = evaluation.get("metrics") or {}
    primary = evaluation.get("primary")
    guards = list((evaluation.get("guards") or {}).keys())
    order = [primary] if primary else []
    order += [g for g in guards if g not in order]
    return order + [m for m in metrics if m not in order]


def _task_type(manifest: dict) -> str:
    return "text-classification" if manifest.get("method") == "reward" else "text-generation"


# ----------------------------------------------------------------------------- the card


def card_data(run_dir: Path, manifest: dict, evaluation: dict | None = None) -> ModelCardData:
    base = base_model_info(run_dir, manifest)
    peft = bool(manifest.get("peft"))
    methods = [str(m) for m in manifest.get("methods") or [manifest.get("method")] if m]
    peft_type = _read_json(run_dir / "adapter" / "adapter_config.json").get("peft_type")
    tags = ["trl", *methods]
    if peft:
        tags.append(str(peft_type or "lora").lower())
    tags.append("signal-posttrain")
    snapshot = str(manifest.get("snapshot_version") or "") or None
    datasets = [snapshot] if snapshot else []
    eval_results = None
    if evaluation:
        eval_snapshot = str(evaluation.get("snapshot_version") or snapshot or "unknown")
        if eval_snapshot not in datasets:
            datasets.append(eval_snapshot)
        metrics = evaluation.get("metrics") or {}
        eval_results = []
        for name in _gate_order(evaluation):
            value = _num((metrics.get(name) or {}).get("candidate"))
            if value is None:
                continue
            eval_results.append(EvalResult(
                task_type=_task_type(manifest), task_name="held-out user signal (promotion gate)",
                dataset_type=eval_snapshot, dataset_name=eval_snapshot, dataset_split="eval",
                metric_type=name, metric_name=name, metric_value=value))
        eval_results = eval_results or None
    return ModelCardData(
        base_model=base["hub_id"],
        datasets=datasets or None,
        license=base["license"],
        library_name="peft" if peft else "transformers",
        pipeline_tag=_task_type(manifest),
        tags=tags,
        # model_name only names the model-index; without results it would be a stray key
        model_name=f"{manifest.get('exp_name')}/{manifest.get('run_id')}" if eval_results else None,
        eval_results=eval_results,
    )


def _intro(run_dir: Path, manifest: dict) -> list[str]:
    base = base_model_info(run_dir, manifest)
    methods = " then ".join(str(m) for m in manifest.get("methods") or [manifest.get("method")])
    kind = "LoRA adapter" if manifest.get("peft") else "full fine-tune"
    if base["hub_id"] and base["local"]:
        of = f"`{base['hub_id']}` (local copy `{base['name']}`)"
    elif base["hub_id"]:
        of = f"`{base['hub_id']}`"
    else:
        of = f"the local model `{base['name']}` (no hub id known, so no `base_model` in the metadata)"
    rev = manifest.get("base_model_revision")
    git = manifest.get("git") or {}
    commit = git.get("commit") or "unknown"
    dirty = " + local changes" if git.get("dirty") else ""
    return [
        f"# {manifest.get('exp_name')} / {manifest.get('run_id')}",
        "",
        f"{methods} ({kind}) of {of}{f' at revision `{rev}`' if rev else ''} with TRL on "
        f"snapshot `{manifest.get('snapshot_version')}`, by `python -m train` (signal-posttrain, "
        f"commit {commit}{dirty}). The resolved configuration is `config.yaml` and the run's "
        "contract `manifest.json` in the run directory.",
        "",
    ]


def _usage(run_dir: Path, manifest: dict) -> list[str]:
    reward = manifest.get("method") == "reward"
    arts = manifest.get("artifacts") or {}
    lines = ["## How to load it", ""]
    if arts.get("model"):
        cls = "AutoModelForSequenceClassification" if reward else "AutoModelForCausalLM"
        lines += [
            "```python",
            f"from transformers import {cls}, AutoTokenizer",
            "",
            f'path = "{run_dir / arts["model"]}"  # or the hub repo this folder was pushed to',
            f"model = {cls}.from_pretrained(path)",
            "tokenizer = AutoTokenizer.from_pretrained(path)",
            "```",
            "",
        ]
    if arts.get("adapter"):
        cls = "AutoPeftModelForSequenceClassification" if reward else "AutoPeftModelForCausalLM"
        lines += [
            ("The LoRA adapter alone (PEFT loads its base model):" if arts.get("model") else
             "A LoRA adapter; PEFT loads its base model:"),
            "",
            "```python",
            f"from peft import {cls}",
            "from transformers import AutoTokenizer",
            "",
            f'path = "{run_dir / arts["adapter"]}"  # or the hub repo this folder was pushed to',
            f"model = {cls}.from_pretrained(path)",
            "tokenizer = AutoTokenizer.from_pretrained(path)",
            "```",
            "",
        ]
    return lines


def _gate(evaluation: dict | None) -> list[str]:
    lines = ["## Promotion gate", ""]
    if not evaluation:
        return lines + ["Not evaluated by the promotion gate yet; this card is rewritten with the "
                        "gate's decision and figures once it is.", ""]
    decision = evaluation.get("decision", "inconclusive")
    conf = _num(evaluation.get("confidence")) or 0.95
    lines += [
        f"**Decision: {decision}** against baseline `{evaluation.get('baseline')}` on held-out user "
        f"signal of snapshot `{evaluation.get('snapshot_version')}` (eval `{evaluation.get('eval_id')}`). "
        "Change is candidate - baseline; every metric is higher-is-better, and the interval is a "
        "paired confidence interval on the change (docs/eval.md#intervals-at-the-boundary)."
        + (" The gate moved `production` to this run." if evaluation.get("promoted") else ""),
        "",
        f"| metric | baseline | candidate | change | {conf:.0%} interval | n | what it measures |",
        "|---|---|---|---|---|---|---|",
    ]
    metrics = evaluation.get("metrics") or {}
    primary = evaluation.get("primary")
    guards = evaluation.get("guards") or {}
    for name in _gate_order(evaluation):
        m = metrics.get(name)
        if m is None:
            label = f"{name} (primary)" if name == primary else f"{name} (guard)"
            lines.append(f"| **{label}** | n/a | n/a | n/a | n/a | 0 | not computed |")
            continue
        if name == primary:
            label = f"**{name}** (primary)"
        elif name in guards:
            label = f"{name} (guard: may fall by at most {_fmt(guards[name])})"
        else:
            label = name
        ci = f"[{_fmt(m.get('ci_low'), True)}, {_fmt(m.get('ci_high'), True)}]"
        n = m.get("n")
        lines.append(" | ".join([
            f"| {_cell(label)}", _fmt(m.get("baseline")), _fmt(m.get("candidate")),
            _fmt(m.get("diff"), True), ci, str(n if n is not None else "n/a"),
            _cell(MEASURES.get(name, (m.get("details") or {}).get("unit", ""))) + " |"]))
    reasons = [str(r) for r in evaluation.get("reasons") or []]
    if reasons:
        lines += ["", "Why:", "", *[f"- {_cell(r)}" for r in reasons]]
    return lines + [""]


def _trl(manifest: dict) -> list[str]:
    per_method = manifest.get("per_method_metrics")
    if isinstance(per_method, dict) and per_method:
        groups = list(per_method.items())
    elif manifest.get("stages"):
        groups = [(s.get("dir") or s.get("method"), s.get("metrics") or {}) for s in manifest["stages"]]
    else:
        groups = [(manifest.get("method"), manifest.get("metrics") or {})]
    preference = any(k.split("/")[0].endswith("rewards") for _, m in groups for k in (m or {}))
    preference |= bool(set(manifest.get("methods") or [manifest.get("method")]) & {"dpo", "kto", "orpo"})
    lines = ["## Training-time metrics (TRL's own logs, not the gate)", "",
             "What each TRL trainer reported at the end of its stage: `train_*` on its training "
             "data, `eval_*` on the snapshot's eval split."
             + (" " + REWARD_ACCURACY_NOTE if preference else ""), ""]
    for label, metrics in groups:
        rows = [(k, v) for k, v in sorted((metrics or {}).items())
                if k not in SKIP_TRL and not isinstance(v, dict | list)]
        if not rows:
            continue
        if len(groups) > 1:
            lines += [f"### {label}", ""]
        lines += ["| metric | value |", "|---|---|",
                  *[f"| {_cell(k)} | {_fmt_trl(v)} |" for k, v in rows], ""]
    return lines


def build_card(run_dir: Path, manifest: dict, evaluation: dict | None = None) -> ModelCard:
    run_dir = Path(run_dir)
    data = card_data(run_dir, manifest, evaluation)
    body = [*_intro(run_dir, manifest), *_usage(run_dir, manifest), *_gate(evaluation),
            *_trl(manifest)]
    # ModelCard parses what it is given, so a malformed header fails here, not on the hub.
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body).rstrip() + "\n")


def write_card(run_dir: Path, manifest: dict, evaluation: dict | None = None) -> ModelCard:
    """Build the run's card and write it to run_dir/README.md (+ adapter/, model/ when present)."""
    run_dir = Path(run_dir)
    card = build_card(run_dir, manifest, evaluation)
    for folder in FOLDERS:
        if (run_dir / folder).is_dir():
            card.save(run_dir / folder / "README.md")
    card.save(run_dir / "README.md")
    return card
