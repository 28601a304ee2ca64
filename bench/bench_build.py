"""Benchmark `signals build` against the floor: one hand-written DuckDB query that writes the
same preference pairs to Parquet, timed in the same run on the same store.

    python bench/bench_build.py                       # 1M and 5M feedback events
    python bench/bench_build.py --events 200000 --no-5m

The store is synthetic, written straight into the schema by SQL: N feedback events on
N/1.4 interactions (prompts ~300 chars: a system message and a question whose topic
repeats, so regenerations exist; completions ~200 chars), 40% accept, 20% reject, 20%
edit (1 in 10 whitespace-only), 20% rate, every 10th interaction a choice between two
outputs of the same prompt, 40% of the interactions with a second event (accept or
rate); 10% of prompts carry an order number, 1% an email (PII). Each measurement runs in a fresh child process (peak RSS = its
ru_maxrss). The build is the whole thing: SFT, pairs, KTO, splits, decontamination, PII
redaction, six Parquet files, manifest, store records; it is also timed with SFT and KTO
off (the pairs alone, like for like with the floor). The floor runs under the builder's
DuckDB memory limit, with its whitespace normalization (build_normalize) and Snappy compression.
`--repeat N` keeps the fastest of N runs at both sizes. Targets (2 cores): within 1.5x of
the floor at 1M; 5M build at most 5.5x the 1M build; peak RSS under 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("account billing refund order parcel delivery password login update version screen button "
         "report summary query table column index customer product price invoice payment support "
         "ticket issue error crash network server client request response message email phone "
         "address city country street weather river bridge station library school teacher student "
         "garden kitchen coffee bread market music movie story history science energy water light "
         "quickly slowly carefully clearly simply really almost always never often today tomorrow").split()

GENERATE = """
CREATE OR REPLACE MACRO words_of(seed, k, n) AS
    array_to_string(list_transform(range(n), lambda x: ($words)[1 + (hash(seed, k, x) % $nwords)::INTEGER]), ' ');
INSERT INTO interactions (interaction_id, ts, user_id, session_id, app, task, model_id, prompt, completion)
SELECT
    'i' || n,
    TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(n * 3),
    'u' || (hash(n, 'u') % $users),
    'u' || (hash(n, 'u') % $users) || '-' || (n // 50),
    ['support', 'sql', 'summarize'][1 + (pk % 3)::INTEGER],
    'task',
    'm' || (n % 2),
    to_json([{'role': 'system', 'content': 'You are a helpful assistant for the product. Answer briefly.'},
             {'role': 'user', 'content': 'Question about ' || words_of(pk, 'p', 40)
                 || CASE WHEN pk % 10 = 3 THEN ' about order ' || (pk % 100000) ELSE '' END
                 || CASE WHEN pk % 100 = 7 THEN ' contact me at user' || pk || '@example.com' ELSE '' END}]),
    words_of(n, 'c', 28)
FROM (SELECT n, CASE WHEN n % 10 = 1 THEN hash(n - 1, 'p') % $prompts ELSE hash(n, 'p') % $prompts END AS pk
      FROM range($interactions) t(n));

INSERT INTO feedback (event_id, interaction_id, ts, kind, edited_text, score, other_interaction_id)
SELECT 'e' || n || 'a', 'i' || n, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(n * 3 + 1), kind,
    CASE WHEN kind = 'edit' THEN CASE WHEN r % 10 = 0 THEN c || '  '
                                       ELSE 'Edited ' || words_of(n, 'e', 6) || ' ' || c END END,
    CASE WHEN kind = 'rate' THEN 1 + r % 5 END,
    CASE WHEN kind = 'choose' THEN 'i' || (n + 1) END
FROM (SELECT n, r, c, CASE WHEN n % 10 = 0 THEN 'choose' WHEN r < 40 THEN 'accept' WHEN r < 60 THEN 'reject'
                            WHEN r < 80 THEN 'edit' ELSE 'rate' END AS kind
      FROM (SELECT n, hash(n, 'k') % 100 AS r, words_of(n, 'c', 28) AS c FROM range($interactions) t(n)));

INSERT INTO feedback (event_id, interaction_id, ts, kind, score)
SELECT 'e' || n || 'b', 'i' || n, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(n * 3 + 2),
    CASE WHEN hash(n, 'k2') % 2 = 0 THEN 'accept' ELSE 'rate' END, 1 + hash(n, 's') % 5
FROM range($interactions) t(n)
WHERE n % 2 = 0 AND n % 10 <> 0 AND n < $second;
"""

# The floor: the same preference pairs (recipe `base`: latest decisive feedback, ratings 4/2,
# an accept after an edit keeps it, non-trivial edits, latest choice per pair of the same
# prompt, up to 4 regeneration pairs per prompt, exact de-duplication), written by hand.
FLOOR = """
COPY (
WITH i AS (
    SELECT interaction_id, ts, user_id, completion, msgs, md5_number_lower(build_normalize(p)) AS pk
    FROM (SELECT *, lower(array_to_string(list_transform(msgs, lambda m: m.role || ': ' || m.content), chr(31))) AS p
          FROM (SELECT *, from_json(prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]') AS msgs FROM interactions))
    WHERE user_id IS NULL OR user_id NOT IN (SELECT user_id FROM optouts)
),
ev AS (
    SELECT interaction_id, ts, event_id, edited_text,
        CASE kind WHEN 'accept' THEN 'accept' WHEN 'reject' THEN 'reject'
            WHEN 'rate' THEN CASE WHEN score >= 4 THEN 'accept' WHEN score <= 2 THEN 'reject' END
            WHEN 'edit' THEN CASE WHEN e = c THEN NULL
                                  WHEN abs(length(e) - length(c)) >= 0.02 * greatest(length(e), length(c)) THEN 'edit'
                                  WHEN levenshtein(e, c) >= 0.02 * greatest(length(e), length(c)) THEN 'edit' END
        END AS d
    FROM (SELECT f.*, CASE WHEN f.kind = 'edit' THEN build_normalize(f.edited_text) END AS e,
                      CASE WHEN f.kind = 'edit' THEN build_normalize(i.completion) END AS c
          FROM feedback f JOIN i USING (interaction_id))
),
o AS (
    SELECT interaction_id,
        arg_max(d, (ts, CASE d WHEN 'edit' THEN 3 WHEN 'reject' THEN 2 ELSE 1 END, event_id)) AS latest,
        arg_max(edited_text, (ts, event_id)) FILTER (WHERE d = 'edit') AS last_edit
    FROM ev WHERE d IS NOT NULL GROUP BY interaction_id
),
oc AS (
    SELECT o.interaction_id, i.pk, i.completion, o.last_edit,
        CASE WHEN latest = 'accept' AND last_edit IS NOT NULL THEN 'edit' ELSE latest END AS outcome
    FROM o JOIN i USING (interaction_id)
),
ch AS (
    SELECT arg_max(struct_pack(a := interaction_id, b := other_interaction_id), (ts, event_id)) AS c FROM feedback
    WHERE kind = 'choose' AND other_interaction_id IS NOT NULL AND interaction_id <> other_interaction_id
    GROUP BY least(interaction_id, other_interaction_id), greatest(interaction_id, other_interaction_id)
),
rg AS (
    SELECT *, row_number() OVER (PARTITION BY pk, outcome ORDER BY md5_number_lower('0' || chr(31) || interaction_id)) AS r
    FROM oc WHERE outcome IN ('accept', 'reject')
      AND pk IN (SELECT pk FROM oc WHERE outcome IN ('accept', 'reject') GROUP BY pk HAVING count(DISTINCT outcome) = 2)
),
pairs AS (
    SELECT interaction_id, 'edit' AS origin, pk, last_edit AS chosen, completion AS rejected, interaction_id AS ts_of
    FROM oc WHERE outcome = 'edit'
    UNION ALL
    SELECT a.interaction_id, 'choose', a.pk, a.completion, b.completion, a.interaction_id
    FROM ch JOIN i a ON a.interaction_id = ch.c.a JOIN i b ON b.interaction_id = ch.c.b
    WHERE a.pk = b.pk AND a.completion <> b.completion
    UNION ALL
    SELECT a.interaction_id, 'regen', a.pk, a.completion, b.completion, a.interaction_id
    FROM rg a JOIN rg b ON a.pk = b.pk AND a.r = b.r
    WHERE a.outcome = 'accept' AND b.outcome = 'reject' AND a.r <= 4 AND a.completion <> b.completion
)
SELECT i.msgs AS prompt,
    [{'role': 'assistant', 'content': p.chosen}] AS chosen,
    [{'role': 'assistant', 'content': p.rejected}] AS rejected,
    p.interaction_id, p.origin
FROM pairs p JOIN i USING (interaction_id)
QUALIFY row_number() OVER (PARTITION BY p.pk, p.chosen, p.rejected
                           ORDER BY i.ts, p.interaction_id) = 1
) TO '$out' (FORMAT parquet, COMPRESSION snappy)
"""


def generate(db: Path, events: int, interactions_per_user: int = 60) -> dict:
    """A synthetic store with `events` feedback events (1.5 per interaction)."""
    from signals.store import open_store

    interactions = round(events / 1.4)
    # second events go to even interactions (not the choosers) up to the count that makes `events`
    second = min(interactions, round((events - interactions) / 0.4))
    con = open_store(db)
    con.execute("SET memory_limit = '4GB'")
    sql = (GENERATE.replace("$words", "[" + ", ".join(f"'{w}'" for w in WORDS) + "]")
           .replace("$nwords", str(len(WORDS))).replace("$users", str(max(interactions // interactions_per_user, 10)))
           .replace("$prompts", str(max(interactions // 3, 10))).replace("$interactions", str(interactions))
           .replace("$second", str(second)))
    t = time.perf_counter()
    con.execute(sql)
    n_i = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
    n_f = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    con.execute("CHECKPOINT")
    con.close()
    return {"interactions": n_i, "feedback": n_f, "seconds": time.perf_counter() - t}


def child(what: str, db: str, out: str) -> None:
    """Run one measurement in this (fresh) process and print JSON."""
    import duckdb

    from signals.build import BuildSettings
    from signals.build.steps import sql

    t = time.perf_counter()
    if what == "floor":
        con = duckdb.connect(db, read_only=True)
        # the builder's DuckDB memory limit for its SQL steps; BENCH_FLOOR_MEMORY: a retry's
        memory = os.environ.get("BENCH_FLOOR_MEMORY") or BuildSettings.from_env().memory_limit
        con.execute(f"SET memory_limit = '{memory}'")
        con.execute("SET preserve_insertion_order = false")
        # the builder's whitespace normalization (the build_normalize macro), so both normalize alike
        con.execute(sql("build_macros"))
        path = Path(out) / "floor.parquet"
        con.execute(FLOOR.replace("$out", str(path)))
        keys = con.execute("SELECT interaction_id, origin FROM read_parquet(?) ORDER BY ALL", [str(path)]).fetchall()
        con.close()
    else:
        from signals.build import build_snapshot

        recipe = {"name": "bench"}
        if what == "pairs":           # like for like with the floor: the pairs alone
            recipe.update(sft={"enabled": False}, kto={"enabled": False})
        snap = build_snapshot(recipe, db, out, progress=False)
        con = duckdb.connect()
        files = [str(snap.file("pref", s)) for s in ("train", "eval")]
        keys = con.execute("SELECT interaction_id, origin FROM read_parquet(?) ORDER BY ALL", [files]).fetchall()
    seconds = time.perf_counter() - t
    import hashlib

    digest = hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "pairs": len(keys), "pairs_digest": digest}))


def measure(what: str, db: Path, work: Path, env: dict | None = None) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    r = subprocess.run([sys.executable, __file__, "--child", what, str(db), str(out)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    shutil.rmtree(out, ignore_errors=True)
    if r.returncode and what == "floor" and not env and "OutOfMemory" in r.stderr:
        # the hand-written query does not fit the builder's limit (it sorts and joins wide
        # rows): time it with 4GB instead, and say so
        print("  floor: out of memory under the builder's limit; timed again with 4GB", flush=True)
        res = measure(what, db, work, {"BENCH_FLOOR_MEMORY": "4GB"})
        res["memory"] = "4GB"
        return res
    if r.returncode:
        last = [line for line in r.stderr.strip().splitlines() if "Error" in line][-1:] or ["?"]
        print(f"  {what} FAILED: {last[0][:200]}", flush=True)
        return {"seconds": float("nan"), "rss_mb": float("nan"), "pairs": -1, "pairs_digest": what, "failed": True}
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_size(events: int, work: Path, repeat: int) -> dict:
    db = work / f"store-{events}.duckdb"
    g = generate(db, events)
    print(f"\n{events:,} events: {g['interactions']:,} interactions, {g['feedback']:,} feedback "
          f"(generated in {g['seconds']:.1f} s, store {db.stat().st_size / 2**20:.0f} MiB)", flush=True)
    runs: dict[str, list] = {"floor": [], "pairs": [], "build": []}
    for _ in range(repeat):
        for what in runs:
            runs[what].append(measure(what, db, work))
    f, p, b = (min(runs[w], key=lambda r: (r.get("failed", False), r["seconds"])) for w in ("floor", "pairs", "build"))
    same = f["pairs_digest"] == b["pairs_digest"] == p["pairs_digest"]
    print(f"  floor: one hand-written query -> pairs Parquet    {f['seconds']:7.2f} s  peak RSS {f['rss_mb']:5.0f} MiB"
          f"  pairs {f['pairs']:,}" + (f"  (memory_limit {f['memory']})" if f.get("memory") else ""))
    print(f"  signals build, pairs only (sft, kto off)          {p['seconds']:7.2f} s  peak RSS {p['rss_mb']:5.0f} MiB"
          f"  = {p['seconds'] / f['seconds']:.2f}x the floor")
    print(f"  signals build, full (sft+pref+kto, 6 files)       {b['seconds']:7.2f} s  peak RSS {b['rss_mb']:5.0f} MiB"
          f"  = {b['seconds'] / f['seconds']:.2f}x the floor")
    print(f"  same pairs in all three: {same}   (target: build within 1.5x of the floor)")
    db.unlink()
    return {"events": events, "floor": f, "pairs": p, "build": b, "same_pairs": same}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--large", type=int, default=5_000_000, help="the scaling run (default 5M)")
    p.add_argument("--no-5m", dest="large", action="store_const", const=0, help="skip the scaling run")
    p.add_argument("--repeat", type=int, default=1, help="runs of each, at both sizes (the fastest is kept)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--child", nargs=3, metavar=("WHAT", "DB", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(*a.child)
        return
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-build-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = run_size(a.events, work, a.repeat)
        full_ok = base["build"]["seconds"] <= 1.5 * base["floor"]["seconds"]
        pairs_ok = base["pairs"]["seconds"] <= 1.5 * base["floor"]["seconds"]
        ok = base["same_pairs"] and pairs_ok
        rss = [base["build"]["rss_mb"], base["pairs"]["rss_mb"]]
        if a.large:
            big = run_size(a.large, work, a.repeat)
            scale = big["build"]["seconds"] / base["build"]["seconds"]
            rss.append(big["build"]["rss_mb"])
            print(f"\nscaling: {a.large:,} / {a.events:,} events: build {scale:.2f}x the time "
                  f"(target <= 5.5x); floor {big['floor']['seconds'] / base['floor']['seconds']:.2f}x")
            ok = ok and big["same_pairs"] and scale <= 5.5
        rss = [x for x in rss if x == x] or [float("nan")]   # NaN: a run that failed
        print(f"peak RSS of the build: {max(rss):.0f} MiB (target < 2048 MiB)")
        ok = ok and max(rss) < 2048 and not any(r.get("failed") for r in (base["pairs"], base["build"]))
        print(f"within 1.5x of the floor: pairs-only build {'yes' if pairs_ok else 'NO'}, "
              f"full build {'yes' if full_ok else 'NO'} (it writes ~5x the rows: SFT and KTO too)")
        print("targets met (like for like)" if ok else "TARGETS MISSED")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
