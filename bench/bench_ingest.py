"""Ingest throughput against two baselines measured in the same run.

    .venv/bin/python bench/bench_ingest.py                       # 1M events, then 5M
    .venv/bin/python bench/bench_ingest.py --events 200000 --scale 0 --repeat 1 --python-events 5000  # quick look

Generates N synthetic events in the native format, as two streams in shards of 200k
lines: interactions (prompt ~1 KB as chat messages, completion ~1.5 KB) and feedback
(~1.5 events per interaction, all five kinds), so N = interactions + feedback lines.
Measures, each in a fresh child process (peak RSS is that child's own, VmHWM: ru_maxrss carries
the parent's peak across the exec, and generating the OTLP files holds every interaction, so it
printed 2.74 GiB for the OTel import, VmHWM 1.54 GiB):
  (a) `python -m signals ingest DIR` into a new store (hashing, validation, dedup, commit);
  (b) the floor: DuckDB `CREATE TABLE ... AS SELECT * FROM read_json(...)` of the same files;
  (c) a straightforward Python loader: json.loads per line + executemany INSERTs in batches
      of 10k, run on the first --python-events events and reported as events/s (its time for
      N is that rate extrapolated, which flatters it: it does no validation or dedup).
(a) and (b) run --repeat times, interleaved, and their median times are compared (other work
on a shared machine comes in bursts). Then, unless --scale 0, the same (a) once at --scale x N
events, to show time (against the median 1x time) and memory stay linear/bounded.
Targets (issue 3): at 1M, (a) <= 2x (b), (a) >= 10x (c), RSS < 2 GiB; at 5M, (a) <= 5.5x its
1M time, RSS < 3 GiB.
Then (issue 18) the same events written as a tracing tool exports them, ingested with its
source mapping, each --repeat times (the median reported): (d) Langfuse (GENERATION
observations + scores, one a line) and (e) OpenTelemetry GenAI (OTLP/JSON lines of 8 spans;
feedback as gen_ai.evaluation.result events on the spans). Target: time per record <= 2x (a)'s. Their files hold SHARD rows of a
table each, as the native shards: 200k observations or scores a file; 200k spans (with their
~300k evaluation events) a file. A file is one transaction, and a table's rows below one DuckDB
row group (122,880) are committed through the WAL rather than written in place, which costs
more per row (OTLP files of 200k records, 80k spans, printed 3.47x (a) in a loaded run).

    .venv/bin/python bench/bench_ingest.py --scale 0 --repeat 3 --python-events 0   # native + importers only

Printed by `--scale 0 --repeat 3 --python-events 0` on 2026-12-02, 2 cores with nothing else
running (load average 0.89): (a) 17.38 s, peak RSS 1.53 GiB; (d) Langfuse 26.96 s = 1.55x (a),
1.57 GiB; (e) OTel GenAI 26.75 s = 1.54x (a), 1.64 GiB (medians of 3; docs/formats.md#speed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARD = 200_000
WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had "
         "by word but not what all were we when your can said there use an each which she do how their if will "
         "up other about out many then them these so some her would make like him into time has look two more "
         "write go see number no way could people my than first water been call who oil its now find long down "
         "day did get come made may part order refund parcel invoice account password shipping query table").split()


def _text(rng: random.Random, n_chars: int) -> str:
    out, size = [], 0
    while size < n_chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def generate(root: Path, n_events: int, seed: int = 0) -> tuple[int, int]:
    """Write n_events native records under root/interactions and root/feedback."""
    rng = random.Random(seed)
    pool_p = [_text(rng, 1000) for _ in range(512)]
    pool_c = [_text(rng, 1500) for _ in range(512)]
    n_inter = int(round(n_events / 2.5))
    n_fb = n_events - n_inter
    kinds = ["accept", "accept", "edit", "reject", "rate", "choose"]
    (root / "interactions").mkdir(parents=True)
    (root / "feedback").mkdir(parents=True)
    t0 = 1_700_000_000
    f = None
    for i in range(n_inter):
        if i % SHARD == 0:
            f and f.close()
            f = open(root / "interactions" / f"part-{i // SHARD:05d}.jsonl", "w")
        f.write(json.dumps({
            "interaction_id": f"i{i}", "ts": t0 + i, "user_id": f"u{i % 5000}", "session_id": f"s{i // 7}",
            "app": "support-reply", "task": "reply", "model_id": "m-v3",
            "prompt": [{"role": "system", "content": "You are a helpful support agent."},
                       {"role": "user", "content": f"#{i} " + pool_p[i % 512]}],
            "completion": pool_c[(i * 7) % 512] + f" ({i})", "metadata": {"locale": "en"}}) + "\n")
    f.close()
    f = None
    for j in range(n_fb):
        if j % SHARD == 0:
            f and f.close()
            f = open(root / "feedback" / f"part-{j // SHARD:05d}.jsonl", "w")
        iid = rng.randrange(n_inter)
        kind = kinds[j % len(kinds)]
        rec = {"event_id": f"e{j}", "interaction_id": f"i{iid}", "ts": (t0 + iid) * 1000 + 5000, "kind": kind,
               "user_id": f"u{iid % 5000}"}
        if kind == "edit":
            rec["edited_text"] = pool_c[j % 512][:400]
        elif kind == "rate":
            rec["score"] = j % 5 + 1
        elif kind == "choose":
            rec["other_interaction_id"] = f"i{(iid + 1) % n_inter}"
        f.write(json.dumps(rec) + "\n")
    f.close()
    return n_inter, n_fb


def _native_lines(root: Path):
    for stream in ("interactions", "feedback"):
        for path in sorted((root / stream).glob("*.jsonl")):
            with open(path) as f:
                for line in f:
                    yield stream, json.loads(line)


def _iso(ms: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


LANGFUSE_SCORE = {"accept": ("user-feedback", "BOOLEAN", 1, "True"), "reject": ("user-feedback", "BOOLEAN", 0, "False"),
                  "choose": ("user-feedback", "BOOLEAN", 1, "True"), "rate": ("rating", "NUMERIC", None, None),
                  "edit": ("correction", "CORRECTION", None, None)}


def generate_langfuse(native: Path, out: Path) -> int:
    """The native events as a Langfuse export: each interaction a GENERATION observation, each
    event a score on it (choose, which Langfuse has no score for, becomes a thumbs up); files of
    SHARD records, as the native shards (an ingest holds one file's records until its commit)."""
    out.mkdir(parents=True)
    files: dict[str, object] = {}
    counts = {"observations": 0, "scores": 0}
    n = 0
    for stream, r in _native_lines(native):
        if stream == "interactions":
            kind = "observations"
            rec = {"id": r["interaction_id"], "traceId": "t" + r["interaction_id"], "type": "GENERATION",
                   "name": r["task"], "startTime": _iso(r["ts"] * 1000), "model": r["model_id"],
                   "input": r["prompt"], "output": {"role": "assistant", "content": r["completion"]},
                   "metadata": r["metadata"], "level": "DEFAULT"}
        else:
            kind = "scores"
            name, dtype, value, sval = LANGFUSE_SCORE[r["kind"]]
            rec = {"id": r["event_id"], "traceId": "t" + r["interaction_id"], "observationId": r["interaction_id"],
                   "name": name, "dataType": dtype, "timestamp": _iso(r["ts"]), "source": "API",
                   "value": r.get("score", value), "stringValue": r.get("edited_text", sval)}
        if counts[kind] % SHARD == 0:
            if kind in files:
                files[kind].close()
            files[kind] = open(out / f"{kind}-{counts[kind] // SHARD:05d}.jsonl", "w")
        files[kind].write(json.dumps(rec) + "\n")
        counts[kind] += 1
        n += 1
    for f in files.values():
        f.close()
    return n


def _attr(k, v) -> dict:
    return {"key": k, "value": {"doubleValue": v} if isinstance(v, float) else {"stringValue": v}}


def generate_otel(native: Path, out: Path, per_line: int = 8) -> int:
    """The native events as OTLP/JSON lines: each interaction a chat span (messages in
    gen_ai.input/output.messages), each event a gen_ai.evaluation.result event on its span."""
    evals: dict[str, list] = {}
    inters = []
    for stream, r in _native_lines(native):
        if stream == "interactions":
            inters.append(r)
        else:
            label = {"accept": "pass", "choose": "pass", "reject": "fail", "edit": "fail"}.get(r["kind"])
            ev = [_attr("gen_ai.evaluation.name", "helpfulness" if label is None else "user_feedback")]
            ev.append(_attr("gen_ai.evaluation.score.value", float(r["score"])) if label is None
                      else _attr("gen_ai.evaluation.score.label", label))
            evals.setdefault(r["interaction_id"], []).append(
                {"timeUnixNano": str(r["ts"] * 1_000_000), "name": "gen_ai.evaluation.result", "attributes": ev})
    assert SHARD % per_line == 0
    out.mkdir(parents=True)
    n, f = 0, None
    try:
        for k in range(0, len(inters), per_line):
            if k % SHARD == 0:      # files of SHARD spans (interactions), as the native shards
                f and f.close()
                f = open(out / f"spans-{k // SHARD:05d}.jsonl", "w")
            spans = []
            for r in inters[k:k + per_line]:
                msgs = [{"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]} for m in r["prompt"]]
                spans.append({"traceId": f"{int(r['interaction_id'][1:]):032x}", "spanId": f"{int(r['interaction_id'][1:]):016x}",
                              "parentSpanId": "", "name": "chat m-v3", "kind": 3,
                              "startTimeUnixNano": str(r["ts"] * 1_000_000_000), "endTimeUnixNano": str(r["ts"] * 1_000_000_000 + 1),
                              "attributes": [_attr("gen_ai.operation.name", "chat"), _attr("gen_ai.request.model", r["model_id"]),
                                             _attr("user.id", r["user_id"]), _attr("gen_ai.conversation.id", r["session_id"]),
                                             _attr("gen_ai.input.messages", json.dumps(msgs)),
                                             _attr("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [
                                                 {"type": "text", "content": r["completion"]}], "finish_reason": "stop"}]))],
                              "events": evals.get(r["interaction_id"], []), "status": {}})
                n += 1 + len(evals.get(r["interaction_id"], []))
            f.write(json.dumps({"resourceSpans": [{"resource": {"attributes": [_attr("service.name", "support-reply")]},
                                                   "scopeSpans": [{"scope": {"name": "bench"}, "spans": spans}]}]}) + "\n")
    finally:
        f and f.close()
    return n


# ---------------------------------------------------------------- the three contenders, as child programs

CHILD = {
    "ingest": """
import json, resource, sys, time
from signals.__main__ import main
t = time.perf_counter()
code = main(["ingest", sys.argv[1], "--store", sys.argv[2], "--json", "--wait", "0"])
""",
    "import": """
import json, resource, sys, time
from signals.__main__ import main
t = time.perf_counter()
code = main(["ingest", sys.argv[1], "--store", sys.argv[2], "--json", "--wait", "0", "--source", sys.argv[3]])
""",
    "floor": """
import duckdb, json, resource, sys, time
t = time.perf_counter()
con = duckdb.connect(sys.argv[2])
con.execute(f"CREATE TABLE interactions AS SELECT * FROM read_json('{sys.argv[1]}/interactions/*.jsonl')")
con.execute(f"CREATE TABLE feedback AS SELECT * FROM read_json('{sys.argv[1]}/feedback/*.jsonl')")
con.close()
code = 0
""",
    "python": """
import duckdb, glob, json, resource, sys, time
limit = int(sys.argv[3])
t = time.perf_counter()
con = duckdb.connect(sys.argv[2])
con.execute("CREATE TABLE interactions (interaction_id VARCHAR PRIMARY KEY, ts BIGINT, user_id VARCHAR, prompt VARCHAR, completion VARCHAR)")
con.execute("CREATE TABLE feedback (event_id VARCHAR PRIMARY KEY, interaction_id VARCHAR, ts BIGINT, kind VARCHAR, edited_text VARCHAR, score DOUBLE, other VARCHAR)")
n = 0
files = sorted(glob.glob(sys.argv[1] + "/interactions/*.jsonl")) + sorted(glob.glob(sys.argv[1] + "/feedback/*.jsonl"))
per_stream = {"interactions": int(limit / 2.5)}
per_stream["feedback"] = limit - per_stream["interactions"]
for stream in ("interactions", "feedback"):
    batch, seen = [], 0
    for path in sorted(glob.glob(f"{sys.argv[1]}/{stream}/*.jsonl")):
        for line in open(path):
            if seen >= per_stream[stream]:
                break
            r = json.loads(line)
            seen += 1
            if stream == "interactions":
                batch.append((r["interaction_id"], r["ts"], r.get("user_id"), json.dumps(r["prompt"]), r["completion"]))
            else:
                batch.append((r["event_id"], r["interaction_id"], r["ts"], r["kind"], r.get("edited_text"), r.get("score"), r.get("other_interaction_id")))
            if len(batch) == 10000:
                con.executemany(f"INSERT INTO {stream} VALUES ({', '.join('?' * len(batch[0]))})", batch)
                batch = []
    if batch:
        con.executemany(f"INSERT INTO {stream} VALUES ({', '.join('?' * len(batch[0]))})", batch)
    n += seen
con.close()
code = 0
""",
}
TAIL = """
elapsed = time.perf_counter() - t
try:    # VmHWM: this program's own peak; ru_maxrss also counts the parent's peak before the exec (Linux)
    rss = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0] / 2**20
except (OSError, IndexError):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print("BENCH" + json.dumps({"seconds": elapsed, "rss_gib": rss, "code": code}))
"""


def run_child(kind: str, data: Path, db: Path, *extra) -> dict:
    if db.exists():
        db.unlink()
    r = subprocess.run([sys.executable, "-c", CHILD[kind] + TAIL, str(data), str(db), *map(str, extra)],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = [x for x in r.stdout.splitlines() if x.startswith("BENCH")]
    if r.returncode != 0 or not line:
        raise SystemExit(f"{kind} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    out = json.loads(line[-1][5:])
    if out["code"] != 0:
        raise SystemExit(f"{kind} exited {out['code']}:\n{r.stderr[-4000:]}")
    if kind == "import":
        text = r.stdout[: r.stdout.index("BENCH")]
        summary = json.loads(text[text.index("{\n"):])
        out["stored"] = summary["interactions"] + summary["feedback"]
        out["quarantined"] = summary["quarantined"]
    if kind == "ingest":
        text = r.stdout[: r.stdout.index("BENCH")]
        summary = json.loads(text[text.index("{\n"):])             # the --json summary (progress goes to stderr)
        out["stored"] = summary["interactions"] + summary["feedback"]
        out["quarantined"] = summary["quarantined"]
        import duckdb  # every stored row names its own line (files are read in parallel)

        con = duckdb.connect(str(db), read_only=True)
        out["misnumbered"] = con.execute(
            f"SELECT count(*) FROM interactions WHERE source_row <> substr(interaction_id, 2)::BIGINT % {SHARD} + 1"
        ).fetchone()[0]
        con.close()
    return out


def median_run(runs: list[dict]) -> dict:
    """The run with the median time, reporting the highest peak RSS of all."""
    mid = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**mid, "rss_gib": max(r["rss_gib"] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--scale", type=int, default=5, help="also ingest scale x events (0: skip)")
    ap.add_argument("--python-events", type=int, default=100_000, help="events the Python loader runs on")
    ap.add_argument("--repeat", type=int, default=3, help="runs of (a) and (b) at N events, interleaved; medians reported")
    ap.add_argument("--workdir", default=None, help="where to write the data (default: a temp dir)")
    ap.add_argument("--importers", default="langfuse,otel-genai",
                    help="comma-separated importer rows after (c): langfuse, otel-genai ('' for none)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-ingest-"))
    print(f"# bench_ingest: {os.cpu_count()} CPUs, work dir {work}")
    try:
        t = time.perf_counter()
        data = work / "data"
        ni, nf = generate(data, args.events)
        size = sum(p.stat().st_size for p in data.rglob("*.jsonl")) / 2**30
        print(f"generated {args.events:,} events ({ni:,} interactions + {nf:,} feedback), {size:.2f} GiB "
              f"in {time.perf_counter() - t:.0f}s")
        runs_a, runs_b = [], []
        for i in range(args.repeat):  # interleaved, so a burst of other work hits both sides
            runs_a.append(run_child("ingest", data, work / "a.duckdb"))
            assert runs_a[-1]["stored"] == args.events and runs_a[-1]["quarantined"] == 0 \
                and runs_a[-1]["misnumbered"] == 0, runs_a[-1]
            runs_b.append(run_child("floor", data, work / "b.duckdb"))
            if args.repeat > 1:
                print(f"  run {i + 1}: (a) {runs_a[-1]['seconds']:.2f} s  (b) {runs_b[-1]['seconds']:.2f} s")
        a, b = median_run(runs_a), median_run(runs_b)
        rate = lambda r, n: n / r["seconds"]  # noqa: E731
        ok = lambda cond: "OK" if cond else "MISSED"  # noqa: E731
        print(f"(a) signals ingest      {a['seconds']:8.2f} s  {rate(a, args.events):>10,.0f} events/s  peak RSS {a['rss_gib']:.2f} GiB")
        print(f"(b) read_json CTAS floor {b['seconds']:7.2f} s  {rate(b, args.events):>10,.0f} events/s  peak RSS {b['rss_gib']:.2f} GiB")
        if args.python_events:
            c = run_child("python", data, work / "c.duckdb", args.python_events)
            c_time = args.events / rate(c, args.python_events)
            print(f"(c) Python loader       {c_time:8.2f} s  {rate(c, args.python_events):>10,.0f} events/s  peak RSS "
                  f"{c['rss_gib']:.2f} GiB  (measured on {args.python_events:,} events, extrapolated)")
        ab = a["seconds"] / b["seconds"]
        print(f"(a)/(b) = {ab:.2f}x  (target <= 2x)   {ok(ab <= 2)}")
        if args.python_events:
            ca = c_time / a["seconds"]
            print(f"(c)/(a) = {ca:.1f}x  (target >= 10x)  {ok(ca >= 10)}")
        print(f"peak RSS (a) = {a['rss_gib']:.2f} GiB (target < 2 GiB)  {ok(a['rss_gib'] < 2)}")
        per_a = a["seconds"] / args.events * 1e6
        for row, source in zip("de", [x for x in args.importers.split(",") if x], strict=False):
            gen = {"langfuse": generate_langfuse, "otel-genai": generate_otel}[source]
            t = time.perf_counter()
            n = gen(data, work / source)
            print(f"generated {n:,} records as {source} in {time.perf_counter() - t:.0f}s")
            runs = [run_child("import", work / source, work / f"{row}.duckdb", source) for _ in range(args.repeat)]
            for d in runs:
                assert d["stored"] == n == args.events and d["quarantined"] == 0, d
            if args.repeat > 1:
                print("  runs: " + "  ".join(f"{d['seconds']:.2f} s" for d in runs))
            d = median_run(runs)
            shutil.rmtree(work / source)
            per = d["seconds"] / n * 1e6
            print(f"({row}) ingest --source {source:<10} {d['seconds']:8.2f} s  {rate(d, n):>10,.0f} records/s  "
                  f"peak RSS {d['rss_gib']:.2f} GiB  {per:.1f} us/record = {per / per_a:.2f}x (a)  "
                  f"(target <= 2x)  {ok(per / per_a <= 2)}")
        if args.scale:
            shutil.rmtree(data)
            big = args.events * args.scale
            t = time.perf_counter()
            generate(data, big)
            size = sum(p.stat().st_size for p in data.rglob("*.jsonl")) / 2**30
            print(f"generated {big:,} events, {size:.2f} GiB in {time.perf_counter() - t:.0f}s")
            a5 = run_child("ingest", data, work / "a5.duckdb")
            assert a5["stored"] == big and a5["quarantined"] == 0 and a5["misnumbered"] == 0, a5
            r = a5["seconds"] / a["seconds"]
            print(f"(a) at {big:,}: {a5['seconds']:.2f} s  {rate(a5, big):,.0f} events/s  peak RSS {a5['rss_gib']:.2f} GiB")
            print(f"time {big:,} / {args.events:,} = {r:.2f}x  (target <= {0.5 + args.scale:.1f}x for {args.scale}x data)  {ok(r <= 0.5 + args.scale)}")
            print(f"peak RSS at {big:,} = {a5['rss_gib']:.2f} GiB (target < 3 GiB)  {ok(a5['rss_gib'] < 3)}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
