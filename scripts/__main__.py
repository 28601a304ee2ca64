"""`python -m scripts VERB [options] [overrides]`: the scheduled job, the demo and its product simulator.

    python -m scripts nightly +exp=demo          # what cron / Kubernetes CronJob / Slurm run
    python -m scripts demo                       # make demo: simulated users, gateway, nightly, live check
    python -m scripts simulate --out data/landing --days 3
    python -m scripts results                    # make results: the real-data exps -> docs/results.md
"""

from __future__ import annotations

import sys
from datetime import date

from scripts.nightly import nightly
from signals.cli import Verb
from signals.cli import main as run_cli


def _nightly_args(p) -> None:
    p.add_argument("--store", default=None, metavar="FILE", help="the signal store (the override store=FILE)")
    p.add_argument("--quiet", action="store_true", help="no progress bars: the JSON line of each stage only")


def simulate(args) -> int:
    """Write the seeded demo product's logs (three apps with a hidden house style) as daily JSONL."""
    from scripts.simulate import simulate as write

    files = write(args.out, days=args.days, per_day=args.per_day, seed=args.seed, start=args.start,
                  noise=args.noise, flip=args.flip)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


def _simulate_args(p) -> None:
    p.add_argument("--out", default="data/landing", help="landing folder for the log files (default data/landing)")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--per-day", type=int, default=150, help="interactions per day")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=date.fromisoformat, default=date(2026, 11, 1), help="first day, YYYY-MM-DD")
    p.add_argument("--noise", type=float, default=0.1, help="share of random reactions")
    p.add_argument("--flip", action="store_true", help="users prefer the plain answers (label-flipped signal)")


def demo(args) -> int:
    """The product with its loop closed: simulated users react to the served model's real answers."""
    from scripts.demo import demo as run

    return run(args)


def _demo_args(p) -> None:
    from scripts.demo import add_arguments

    add_arguments(p)


def results(args) -> int:
    """Run the real-data exps on this machine and regenerate docs/results.md from their figures."""
    from scripts.results import results as run

    return run(args)


def _results_args(p) -> None:
    from scripts.results import add_arguments

    add_arguments(p)


VERBS = {
    "nightly": Verb(nightly, _nightly_args, "python -m scripts nightly +exp=demo model=tiny", overrides=True),
    "demo": Verb(demo, _demo_args, "python -m scripts demo --users 12 model=tiny", overrides=True),
    "simulate": Verb(simulate, _simulate_args, "python -m scripts simulate --out data/landing --days 1"),
    "results": Verb(results, _results_args, "python -m scripts results --exps hh-rlhf", overrides=True),
}


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m scripts", "The scheduled pipeline, the demo and its simulated product.", VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
