"""Forget at scale: one user and 100,000 users on a synthetic store, against the floor of any rewrite.

    python bench/bench_forget.py                          # 5M feedback events
    python bench/bench_forget.py --events 200000          # a quick look

The store is bench_build.py's synthetic one (same SQL), with more users (one per 18
interactions) so that 100,000 of them exist. `signals.erasure.forget` deletes the users'
rows, leaves keyed tombstones and rewrites the store file so freed blocks keep no deleted
text; each case starts from a fresh copy of the same store. The floor is copying the store
file (`shutil.copyfile`), timed in the same run: no rewrite can be faster than writing the
file once. Printed: the time of each forget and its ratio to the floor, the store's size
before and after, the rows deleted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def generate(db: Path, events: int) -> dict:
    """bench_build's store, one user per 18 interactions; plus the number of users."""
    import duckdb
    from bench_build import generate as generate_store

    g = generate_store(db, events, interactions_per_user=18)
    con = duckdb.connect(str(db), read_only=True)
    g["users"] = con.execute("SELECT count(DISTINCT user_id) FROM interactions").fetchone()[0]
    con.close()
    return g


def mib(path: Path) -> float:
    return path.stat().st_size / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--many", type=int, default=100_000, help="users forgotten in the bulk case")
    args = ap.parse_args()
    from signals import erasure

    work = Path(tempfile.mkdtemp(prefix="bench-forget-"))
    base = work / "base.duckdb"
    g = generate(base, args.events)
    print(f"{args.events:,} events: {g['interactions']:,} interactions, {g['feedback']:,} feedback, "
          f"{g['users']:,} users (generated in {g['seconds']:.1f} s, store {mib(base):.0f} MiB)")
    cases = [("1 user", ["u7"]), (f"{args.many:,} users", [f"u{i}" for i in range(args.many)])]
    for name, users in cases:
        db = work / "case.duckdb"
        for f in work.glob("case.duckdb*"):
            f.unlink()
        t = time.perf_counter()
        shutil.copyfile(base, db)
        floor = time.perf_counter() - t
        before = mib(db)
        t = time.perf_counter()
        r = erasure.forget(db, users, wait=0)
        took = time.perf_counter() - t
        print(f"forget {name:>14}: {took:7.2f} s = {took / floor:5.1f}x copying the store ({floor:.2f} s); "
              f"store {before:.0f} -> {mib(db):.0f} MiB; deleted {r['interactions']:,} interactions, "
              f"{r['feedback']:,} feedback; rewrite {r['store']['seconds']:.2f} s")
        left = erasure.verify(db, users[:1000], wait=0)
        print(f"  --verify of {min(len(users), 1000):,} of them: {'nothing remains' if not left else left[:3]}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
