"""`python -m serve VERB [options] [overrides]`: serve the promoted model, capture its use.

    python -m serve gateway                        # engine + gateway on 127.0.0.1:8080
    python -m serve gateway engine.url=http://127.0.0.1:8001 port=9000
    python -m serve keys add support-app           # prints the key once; stores its hash
    python -m serve export RUN                     # merged model + int8/int4 variants, each gated

`gateway` is the default verb: `python -m serve port=9000` is `python -m serve gateway port=9000`.
Exit codes: the table in signals/cli.py.
"""

from __future__ import annotations

import json
import sys

from signals.cli import Verb
from signals.cli import main as run_cli


def gateway(args) -> int:
    """Start (or attach to) the engine and serve the OpenAI-compatible gateway until stopped."""
    from serve.app import run_gateway
    from serve.settings import compose

    cfg = compose(list(args.overrides))
    return run_gateway(cfg)


def _gateway_args(p) -> None:
    pass


def keys(args) -> int:
    """Manage API keys: add APP (prints the new key once), list, revoke APP."""
    from serve.keys import KeyFile

    kf = KeyFile(args.keys_file)
    if args.action == "add":
        if not args.app:
            raise ValueError("keys add needs the app name: python -m serve keys add APP")
        token = kf.add(args.app)
        print(token)
        print(f"key for app {args.app!r} stored hashed in {args.keys_file}; it is shown only now",
              file=sys.stderr)
    elif args.action == "revoke":
        if not args.app:
            raise ValueError("keys revoke needs the app name: python -m serve keys revoke APP")
        n = kf.revoke(args.app)
        print(f"revoked {n} key(s) of app {args.app!r}")
    else:
        rows = kf.list()
        if args.json:
            print(json.dumps(rows, indent=2))
        for r in rows if not args.json else []:
            print(f"{r['app']:24} {r['key_id']:14} created {r['created_at']}")
    return 0


def _keys_args(p) -> None:
    p.add_argument("action", choices=["add", "list", "revoke"])
    p.add_argument("app", nargs="?", help="the app the key belongs to (its interactions carry it)")
    p.add_argument("--keys-file", default="data/serve/keys.json", metavar="FILE",
                   help="where hashed keys live (default data/serve/keys.json; the gateway's keys_file)")
    p.add_argument("--json", action="store_true", help="list as JSON")


def export(args) -> int:
    """Write RUN's merged model and weight-only quantized variants; gate each against the merged model."""
    from serve.export import export_run

    return export_run(args)


def _export_args(p) -> None:
    from signals.cli import add_store

    p.add_argument("run", help="run id or run directory")
    p.add_argument("--variants", default="int8,int4", help="comma-separated: int8, int4 (default both)")
    p.add_argument("--out", default=None, metavar="DIR", help="default RUN_DIR/export")
    p.add_argument("--no-eval", action="store_true", help="write the variants without gating them")
    p.add_argument("--margin", type=float, default=0.05, metavar="NATS",
                   help="non-inferiority: sft_loglik (nats/token) a variant may lose against merged (default 0.05)")
    p.add_argument("--guard", action="append", metavar="METRIC=DROP",
                   help="guard metric and its allowed drop (repeatable; default preference_margin_norm=0.05)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="eval/gate override for the variants' evaluation, e.g. eval.max_examples=200 (repeatable)")
    p.add_argument("--bench-tokens", type=int, default=16, metavar="N",
                   help="greedy tokens per prompt when measuring tokens/s and latency (default 16)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads for the export (default torch's; 1 on a busy shared machine)")
    add_store(p)


VERBS = {
    "gateway": Verb(gateway, _gateway_args, "python -m serve gateway port=8080 canary_share=0.1",
                    overrides=True),
    "keys": Verb(keys, _keys_args, "python -m serve keys add support-app --keys-file data/serve/keys.json"),
    "export": Verb(export, _export_args, "python -m serve export runs/smoke/RUN_ID --variants int8"),
}

SUMMARY = "Serve the promoted model through an existing engine and capture every interaction."

def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m serve", SUMMARY, VERBS, argv, default="gateway")


if __name__ == "__main__":
    sys.exit(main())
