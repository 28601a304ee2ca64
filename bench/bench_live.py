"""Benchmark `eval.live.compare` (one model pair, stratified, user bootstrap) against the floor:
a hand-written DuckDB query of the same per-model rates, timed in the same run on the same store.

    python bench/bench_live.py                           # 5M interactions
    python bench/bench_live.py --interactions 500000     # a quick look

The store is synthetic, written straight into the schema by SQL (in a temp dir): N
interactions over 14 days, 40,000 users (a user's interactions are all served by one
model: 20% of users are canary users), 3 apps x 2 tasks with a different traffic mix per
model, metadata.latency_ms; 90% of interactions get an event (55% accept, 15% edit, 15%
reject, 15% rate), 10% of those a second one (accept or rate), so outcomes follow the
build's rules (ratings, accept after edit). The floor computes the accept, edit and reject
rates per model with the same outcome rules (latest decisive event, edit verdicts, ratings
4/2, an accept after an edit keeps it) in one query; `compare` does that per model x user x
stratum, then a 1000-resample bootstrap over users. Both run on one read-only connection
with 2 threads, fastest of --repeat runs each, alternating; wall time and the process's CPU
time (all threads: on a shared machine, CPU/2 is what 2 idle cores would take at best). Targets (2 cores): compare
within 2 s; at most 1.5x the floor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENERATE = """
INSERT INTO interactions (interaction_id, ts, user_id, session_id, app, task, model_id, prompt, completion, metadata)
SELECT 'i' || n, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(n * $step), 'u' || u, 'u' || u || '-' || (n // 40),
    ['support', 'sql', 'summarize'][1 + (CASE WHEN canary THEN hash(n, 'a') % 6 ELSE hash(n, 'a') % 4 END // 2)::INTEGER],
    ['draft', 'fix'][1 + (hash(n, 't') % 2)::INTEGER],
    CASE WHEN canary THEN 'canary' ELSE 'production' END,
    '[{"role":"user","content":"question ' || (n % 1000) || '"}]',
    'answer number ' || (n % 997) || ' for the question asked',
    '{"latency_ms": ' || (200 + hash(n, 'l') % 300) || ', "alias": "' || CASE WHEN canary THEN 'canary' ELSE 'production' END || '"}'
FROM (SELECT n, u, hash(u, 'c') % 10 < 2 AS canary
      FROM (SELECT n, hash(n, 'u') % $users AS u FROM range($interactions) t(n)));

INSERT INTO feedback (event_id, interaction_id, ts, kind, edited_text, score)
SELECT 'e' || n || 'a', 'i' || n, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(n * $step + 5), kind,
    CASE WHEN kind = 'edit' THEN 'Edited: answer number ' || (n % 997) || ' for the question asked, fixed' END,
    CASE WHEN kind = 'rate' THEN 1 + r % 5 END
FROM (SELECT n, r, CASE WHEN r < 55 THEN 'accept' WHEN r < 70 THEN 'edit' WHEN r < 85 THEN 'reject' ELSE 'rate' END AS kind
      FROM (SELECT n, hash(n, 'k') % 100 AS r FROM range($interactions) t(n) WHERE hash(n, 'f') % 10 <> 0));

INSERT INTO feedback (event_id, interaction_id, ts, kind, score)
SELECT 'e' || n || 'b', 'i' || n, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(n * $step + 9),
    CASE WHEN hash(n, 'k2') % 2 = 0 THEN 'accept' ELSE 'rate' END, 1 + hash(n, 's') % 5
FROM range($interactions) t(n) WHERE hash(n, 'f') % 10 = 1;
"""

# The floor: accept, edit and reject rates per model, the build's outcome rules, by hand:
# decisions as numbers (1 accept, 2 reject, 3 edit; the latest is max(time * 4 + decision) % 4),
# edits alone joined to their completion for the verdict, one pass over the interactions.
FLOOR = """
WITH ev AS (
    SELECT interaction_id, ts, CASE kind WHEN 'accept' THEN 1 WHEN 'reject' THEN 2
        WHEN 'rate' THEN CASE WHEN score >= 4 THEN 1 WHEN score <= 2 THEN 2 END END AS d
    FROM feedback WHERE kind <> 'edit'
    UNION ALL
    SELECT interaction_id, ts, CASE WHEN e = '' THEN 2 WHEN e = c THEN NULL
        WHEN abs(length(e) - length(c)) >= 0.02 * greatest(length(e), length(c)) THEN 3
        WHEN levenshtein(e, c) >= 0.02 * greatest(length(e), length(c)) THEN 3 END
    FROM (SELECT f.interaction_id, f.ts, build_normalize(f.edited_text) AS e, build_normalize(i.completion) AS c
          FROM feedback f JOIN interactions i USING (interaction_id)
          WHERE f.kind = 'edit' AND f.edited_text IS NOT NULL)
),
o AS (
    SELECT interaction_id, max(epoch_us(ts) * 4 + d) % 4 AS latest, bool_or(d = 3) AS edited
    FROM ev WHERE d IS NOT NULL GROUP BY interaction_id
)
SELECT model_id, count(*) AS n, count(latest) AS n_outcome,
    count(*) FILTER (WHERE latest = 1 AND NOT edited) / count(latest) AS accept_rate,
    count(*) FILTER (WHERE latest = 3 OR latest = 1 AND edited) / count(latest) AS edit_rate,
    count(*) FILTER (WHERE latest = 2) / count(latest) AS reject_rate
FROM interactions LEFT JOIN o USING (interaction_id)
WHERE model_id IN ('canary', 'production')
GROUP BY model_id ORDER BY model_id
"""


def generate(db: Path, interactions: int, users: int) -> dict:
    from signals.store import open_store

    con = open_store(db)
    con.execute("SET enable_progress_bar = false")
    step = max(1, round(14 * 86400 / interactions))
    sql = (GENERATE.replace("$interactions", str(interactions)).replace("$users", str(users))
           .replace("$step", str(step)))
    t = time.perf_counter()
    con.execute(sql)
    n_i = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
    n_f = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    con.execute("CHECKPOINT")
    con.close()
    return {"interactions": n_i, "feedback": n_f, "seconds": time.perf_counter() - t}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interactions", type=int, default=5_000_000)
    p.add_argument("--users", type=int, default=40_000)
    p.add_argument("--repeat", type=int, default=3, help="runs of each (the fastest is kept)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--db", default=None, help="an existing bench store (skips generating one)")
    a = p.parse_args()
    import duckdb

    from eval import live
    from signals.build.steps import sql

    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        if a.db:
            db = Path(a.db)
            print(f"store {db} ({db.stat().st_size / 2**20:.0f} MiB)")
        else:
            db = work / "store.duckdb"
            g = generate(db, a.interactions, a.users)
            print(f"{g['interactions']:,} interactions, {g['feedback']:,} feedback events, {a.users:,} users "
                  f"(generated in {g['seconds']:.1f} s, store {db.stat().st_size / 2**20:.0f} MiB)")
        print(f"cpus {os.cpu_count()}, duckdb threads {a.threads}, load average at start "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        con = duckdb.connect(str(db), read_only=True)
        con.execute(f"SET threads = {int(a.threads)}")
        con.execute("SET enable_progress_bar = false")
        con.execute(sql("build_macros"))
        floor_s, compare_s, sums_s, floor_cpu, compare_cpu = [], [], [], [], []
        for _ in range(a.repeat):
            t, cpu = time.perf_counter(), time.process_time()
            rates = con.execute(FLOOR).fetchall()
            floor_s.append(time.perf_counter() - t)
            floor_cpu.append(time.process_time() - cpu)
            t, cpu = time.perf_counter(), time.process_time()
            c = live.compare(con, "canary", "production", metric="accept_rate")
            compare_s.append(time.perf_counter() - t)
            compare_cpu.append(time.process_time() - cpu)
            t = time.perf_counter()
            live.user_sums(con, ["canary", "production"], "accept_rate")
            sums_s.append(time.perf_counter() - t)
        floor, best, sums = min(floor_s), min(compare_s), min(sums_s)
        print(f"  floor: hand-written query, accept/edit/reject rates per model   {floor:6.2f} s"
              f"  (CPU {min(floor_cpu):.2f} s)")
        for model, n, n_outcome, acc, ed, rej in rates:
            print(f"         {model:<10} n {n:,}  with outcome {n_outcome:,}  accept {acc:.4f}  edit {ed:.4f}  "
                  f"reject {rej:.4f}")
        print(f"  compare(canary, production, accept_rate), 1000 user resamples   {best:6.2f} s"
              f"  = {best / floor:.2f}x the floor  (CPU {min(compare_cpu):.2f} s = "
              f"{min(compare_cpu) / min(floor_cpu):.2f}x)")
        print(f"         of which the SQL (per model x user x stratum sums)         {sums:6.2f} s")
        print(f"         pooled: canary {c.pooled_candidate:.4f}  production {c.pooled_baseline:.4f}"
              f"  (pooled diff {c.pooled_diff:+.4f})")
        print(f"         stratified diff {c.diff:+.4f}  95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]  users "
              f"{c.users_candidate:,} / {c.users_baseline:,}  strata {c.details['strata_used']}")
        print(f"  runs (s): floor {', '.join(f'{x:.2f}' for x in floor_s)}; compare "
              f"{', '.join(f'{x:.2f}' for x in compare_s)}; load average at end {os.getloadavg()[0]:.2f}")
        same = {m: round(acc, 9) for m, _, _, acc, _, _ in rates} == {
            "canary": round(c.pooled_candidate, 9), "production": round(c.pooled_baseline, 9)}
        print(f"  same pooled accept rates in both: {same}   (targets: compare within 2 s; at most 1.5x the floor)")
        con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
