"""`python -m signals VERB [options]`: the signal store, its datasets and its privacy requests.

    python -m signals ingest logs/ --store data/signal.duckdb      # files, folders, globs
    python -m signals ingest hh.jsonl.gz --source hh-rlhf          # a mapping from conf/source/
    python -m signals stats --json
    python -m signals build data=demo split.method=user            # a dataset snapshot
    python -m signals forget bob                                   # erase a user, revoke snapshots
    python -m signals ingest export.jsonl --source langfuse        # a tracing tool's export (docs/formats.md)
    python -m signals export VERSION --to openai-sft --out out/    # a snapshot for another platform

Heavy modules are imported inside the verbs, so `--help` stays fast. Exit codes: the
table in signals/cli.py (0 ok, 1 failed, 2 bad input, 3 locked, 5 quarantined under --strict).
"""

from __future__ import annotations

import argparse
import json
import sys

from signals.build_cli import build, build_args, snapshots, snapshots_args
from signals.cli import EXIT_QUARANTINED, Verb, add_store
from signals.cli import main as run_cli


def _store(args, read_only: bool = False):
    from signals.store import open_store

    return open_store(args.store, read_only=read_only, wait=args.wait)


def _store_flag(args) -> str:
    """` --store FILE` when the user gave one, so printed hints run as printed."""
    return f" --store {args.store}" if args.store else ""


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def ingest(args) -> int:
    """Ingest JSONL(.gz), JSON, Parquet (hive folders too) or CSV files, folders or globs.

    Invalid records go to quarantine with their row and reason; valid ones next to them
    are kept. Re-ingesting a file is a no-op. Each file is stored whole or not at all."""
    from signals.ingest import ingest_paths

    s = ingest_paths(args.paths, db=args.store, source=args.source, wait=args.wait,
                     max_record_chars=args.max_chars, follow_symlinks=args.follow_symlinks,
                     progress=None if not args.json else False)
    if args.json:
        _print_json(s)
    else:
        ingested = [f for f in s["files"] if f["status"] == "ingested"]
        print(f"{len(ingested)} file(s) ingested, {s['skipped_files']} already ingested (skipped) -> {s['db']}")
        if s.get("corrupt_files"):
            print(f"corrupt files      {s['corrupt_files']}  (recorded in quarantine as corrupt_file; later files were read)")
        if s.get("symlinks_skipped"):
            print(f"symlinks skipped   {s['symlinks_skipped']}  (not followed; --follow-symlinks to read them)")
        print(f"records read       {s['records']}")
        print(f"interactions added {s['interactions']}")
        print(f"feedback added     {s['feedback']}")
        print(f"duplicates skipped {s['duplicates']}")
        if s["forgotten"]:
            print(f"forgotten users' records skipped {s['forgotten']}")
        print(f"pending feedback   {s['pending']}  (waiting for their interaction)")
        print(f"quarantined        {s['quarantined']}" +
              ("  " + ", ".join(f"{k} {v}" for k, v in s["quarantine"].items()) if s["quarantine"] else ""))
        if s["quarantined"]:
            print(f"  see: python -m signals quarantine --limit 20{_store_flag(args)}")
    if args.strict and s["quarantined"]:
        print(f"--strict: {s['quarantined']} record(s) quarantined", file=sys.stderr)
        return EXIT_QUARANTINED
    return 0


def _ingest_args(p):
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, folder or glob (quote globs)")
    add_store(p)
    p.add_argument("--source", default=None,
                   help="mapping name in conf/source/ (see `python -m signals sources`) or a YAML path; "
                        "default: native schema, chat-completion logs detected")
    p.add_argument("--strict", action="store_true", help="exit 5 when any record was quarantined")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="follow symbolic links found inside the given folders and globs (default: list them "
                        "with status symlink and skip them; a file named explicitly is always read)")
    p.add_argument("--max-chars", type=int, default=None,
                   help="largest record in characters (default: setting max_record_chars or 1,000,000)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def stats(args) -> int:
    """Counts: interactions, feedback by kind, pending, quarantine by reason, users, sources.

    Opted-out and forgotten users are counted too. --json keys are stable (docs/signals.md)."""
    from signals.stats import render
    from signals.stats import stats as compute

    con = _store(args, read_only=True)
    try:
        s = compute(con)
    finally:
        con.close()
    _print_json(s) if args.json else print(render(s))
    return 0


def _stats_args(p):
    add_store(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def quarantine(args) -> int:
    """Show or export quarantined records (file, row, reason, field, detail, raw)."""
    from signals.stats import quarantine_rows

    con = _store(args, read_only=True)
    try:
        reasons = dict(con.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason").fetchall())
        if args.reason is not None and args.reason not in reasons:
            from signals.config import did_you_mean

            have = ", ".join(f"{r} ({n})" for r, n in sorted(reasons.items())) or "none: the quarantine is empty"
            raise ValueError(f"--reason {args.reason}: no record has this reason{did_you_mean(args.reason, reasons)}; "
                             f"reasons in the store: {have}")
        rel = quarantine_rows(con, args.reason, args.limit)
        if args.export:
            out = args.export
            if out.endswith(".parquet"):
                rel.write_parquet(out)
            elif out.endswith(".csv"):
                rel.write_csv(out, header=True)
            else:
                cols = rel.columns
                with open(out, "w", encoding="utf-8") as f:
                    for row in rel.fetchall():
                        f.write(json.dumps(dict(zip(cols, row, strict=True)), default=str) + "\n")
            print(f"wrote {out}")
            return 0
        rows = rel.fetchall()
    finally:
        con.close()
    for path, row, reason, field, detail, raw, *_ in rows:
        where = f"{path}:{row}" + (f" [{field}]" if field else "")
        print(f"{where}: {reason}: {detail}\n    {(raw or '')[:200]}")
    total = reasons[args.reason] if args.reason else sum(reasons.values())
    print(f"{len(rows)} of {total} quarantined record(s)" + (f" with reason {args.reason}" if args.reason else ""))
    return 0


def _quarantine_args(p):
    add_store(p)
    p.add_argument("--reason", default=None, help="only this reason (e.g. malformed_json)")
    p.add_argument("--limit", type=int, default=None, help="at most N records")
    p.add_argument("--export", default=None, metavar="FILE", help="write to FILE (.jsonl, .csv or .parquet)")


def optout(args) -> int:
    """Opt users out: their data stays in the store but is never exported to a dataset."""
    from signals.privacy import optout as run

    con = _store(args)
    try:
        r = run(con, args.users)
    finally:
        con.close()
    _print_json(r) if args.json else print(f"opted out {r['added']} new user(s); {r['opted_out_total']} in total")
    return 0


def forget(args) -> int:
    """Forget users: delete their data everywhere, revoke snapshots, rewrite the store; --verify checks.

    Deletes their interactions, feedback (pending too, and their edits and choices on
    others' interactions), quarantined records, opt-outs and cached judge verdicts; keyed
    tombstones (signals/keys.py; the key is <store>.key or $SIGNALS_KEY: back it up)
    keep re-ingested old logs from bringing them back; every snapshot that held their
    text is revoked (files deleted, REVOKED.json left); the store file is rewritten so
    freed blocks keep no deleted text; a receipt goes to <store folder>/erasure-receipts/.
    --verify USER... changes nothing: it lists what remains of them and exits 1 when
    anything does, 0 when nothing does."""
    from signals import erasure
    from signals.keys import KeyMissing
    from signals.store import default_db

    users = list(args.users)
    if args.users_file:
        try:
            with open(args.users_file, encoding="utf-8") as f:
                users += [line.rstrip("\r\n") for line in f]
        except OSError as e:
            print(f"python -m signals forget: --users-file: {e}", file=sys.stderr)
            return 2
    users = [u for u in users if u != ""]
    if not users:
        print("python -m signals forget: no user given (USER... or --users-file FILE)", file=sys.stderr)
        return 2
    if args.verify:
        found = erasure.verify(args.store or default_db(), users, wait=args.wait) + _verify_eval(args)
        if args.json:
            _print_json({"users": len(set(users)), "remains": found})
        elif found:
            print(f"{len(found)} finding(s): data of the {len(set(users))} user(s) remains:")
            for line in found:
                print(f"  {line}")
        else:
            print(f"nothing of the {len(set(users))} user(s) remains in the store, its snapshots or its file")
        return 1 if found else 0
    try:
        r = erasure.forget(args.store or default_db(), users, wait=args.wait, new_key=args.new_key)
    except KeyMissing as e:
        print(f"python -m signals forget: {e}", file=sys.stderr)
        return 2
    r["eval"] = _forget_in_eval(args)
    erasure.amend_receipt(r["receipt"], "eval", r["eval"])
    if args.json:
        _print_json(r)
    else:
        print(f"forgot {r['users']} user(s): deleted {r['interactions']} interactions, {r['feedback']} feedback "
              f"events ({r['pending']} pending), {r['quarantine']} quarantined records, {r['judgments']} judge verdicts")
        if r["snapshots"]:
            print(f"snapshots that held their data ({'revoked' if r['revoked'] else 'NOT revoked: rebuild them'}): "
                  + ", ".join(r["snapshots"]))
            for f in r["snapshot_files"]:
                if f["path"] is None:
                    print(f"  {f['version']}: folder not found, delete its files by hand")
        else:
            print("no snapshot held their data")
        st = r["store"]
        if st["rewritten"]:
            print(f"store rewritten: {st['bytes_before']} -> {st['bytes_after']} bytes in {st['seconds']}s")
        ev = r["eval"]
        print(f"per-example eval results: {ev['examples']['rows']} row(s) removed from {ev['examples']['files']} file(s)"
              " (rebuild the dashboard: python -m eval dashboard)")
        for run in ev["rolled_back"]:
            print(f"production rolled back off {run} (trained on a revoked snapshot); the scheduled job retrains")
        print(f"receipt: {r['receipt']}")
    return 0


def _forget_args(p):
    p.add_argument("users", nargs="*", metavar="USER", help="user_id values")
    p.add_argument("--users-file", default=None, metavar="FILE",
                   help="also every user_id in FILE, one a line (for many users at once)")
    add_store(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--verify", action="store_true",
                   help="change nothing: list what remains of USER... (exit 1 when anything does)")
    p.add_argument("--new-key", action="store_true",
                   help="the store's key is lost for good: start a new one (old tombstones then match nothing; "
                        "forget your erasure register's users again)")
    p.add_argument("--pointer-dir", default="runs",
                   help="where the alias pointer files live (default runs, as for eval promote)")


def _forget_in_eval(args) -> dict:
    """Eval's copies (this entry point sits above every layer): per-example results, and
    `production` moved off runs trained on revoked snapshots (eval/erasure.py)."""
    from eval.erasure import leave_tainted, purge_examples
    from signals.store import default_db, store

    with store(args.store or default_db(), wait=args.wait) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'decisions'").fetchone()[0]:
            return {"examples": {"files": 0, "rows": 0}, "rolled_back": []}
        purged = purge_examples(con)
        moved = leave_tainted(con, pointer_dir=args.pointer_dir)
    return {"examples": {k: purged[k] for k in ("files", "rows")}, "rolled_back": moved}


def _verify_eval(args) -> list[str]:
    from eval.erasure import purge_examples
    from signals.store import default_db, store

    with store(args.store or default_db(), wait=args.wait) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'decisions'").fetchone()[0]:
            return []
        return purge_examples(con, dry_run=True)["found"]


def _users_args(p):
    p.add_argument("users", nargs="+", metavar="USER", help="user_id values")
    add_store(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def retain(args) -> int:
    """Purge interactions, feedback and quarantined records older than N days.

    Without --days the saved policy applies; --save stores N as the policy for later runs."""
    from signals.privacy import retain as run

    con = _store(args)
    try:
        r = run(con, args.days, save=args.save)
    finally:
        con.close()
    _print_json(r) if args.json else print(
        f"retention {r['days']} days (before {r['cutoff']}): deleted {r['interactions']} interactions, "
        f"{r['feedback']} feedback events, {r['quarantine']} quarantined records")
    return 0


def _retain_args(p):
    p.add_argument("--days", type=int, default=None, help="keep the last N days")
    p.add_argument("--save", action="store_true", help="store --days as the retention policy")
    add_store(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def sources(args) -> int:
    """List the source mappings in conf/source/ (for `ingest --source NAME`)."""
    from signals.sources import available, load_mapping

    for name in available():
        m = load_mapping(name)
        print(f"{name:<16} {m.get('description', '').strip().splitlines()[0] if m.get('description') else ''}")
    return 0


def export(args) -> int:
    """Export a snapshot to OpenAI fine-tuning JSONL or a Hugging Face dataset (save_to_disk; --push).

    Only the TRL columns leave the store (no user or interaction ids); a revoked snapshot is
    refused. --push ORG/NAME (with --to hf) needs a token: $HF_TOKEN or `hf auth login`'s; the
    token is never printed. Read the files back with `ingest --source` (docs/formats.md)."""
    from pathlib import Path

    from signals import snapshot
    from signals.formats import export as run
    from signals.secrets import scrub

    store = args.store if args.store and Path(args.store).exists() else None
    snap = snapshot.open(args.snapshot, root=args.root, store=store, wait=args.wait)
    token = None
    if args.push:
        if args.to != "hf":
            raise ValueError("--push goes with --to hf")
        if args.push.count("/") != 1 or any(p in ("", ".", "..") for p in args.push.split("/")):
            raise ValueError(f"--push {args.push!r}: expected ORG/NAME")
        from huggingface_hub import get_token

        token = get_token()
        if not token:
            raise ValueError("--push needs a Hugging Face token: set HF_TOKEN (or run `hf auth login`)")
    files = run(snap, args.to, Path(args.out))
    report = {"snapshot": snap.version, "to": args.to, "out": args.out, "files": files}
    if args.push:
        from signals.formats.hf import push

        try:
            report["pushed"] = {"repo": args.push, "kinds": push(snap, args.push, token)}
        except Exception as e:  # network, auth: say so without the token
            print(f"python -m signals export: push to {args.push} failed: "
                  f"{scrub(f'{type(e).__name__}: {e}', known=[token])}", file=sys.stderr)
            _print_json(report) if args.json else None
            return 1
    if args.json:
        _print_json(report)
    else:
        for name, n in files.items():
            print(f"{n:>8}  {Path(args.out) / name}")
        if report.get("pushed"):
            print(f"pushed {', '.join(report['pushed']['kinds'])} to {args.push}")
    return 0


def _export_args(p):
    from signals.formats import FORMATS

    p.add_argument("snapshot", metavar="SNAPSHOT", help="a snapshot folder, or a version under --root")
    p.add_argument("--to", required=True, choices=FORMATS, help="openai-sft, openai-pref or hf")
    p.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder")
    p.add_argument("--root", default="data/snapshots", help="where versions are looked up (default data/snapshots)")
    p.add_argument("--push", default=None, metavar="ORG/NAME", help="also push to this hub dataset repository (--to hf)")
    add_store(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def fetch(args) -> int:
    """Download the public real-data sets from their upstream at pinned commits (sha256 checked)."""
    from signals.fetch import fetch_command

    return fetch_command(args)


def _fetch_args(p: argparse.ArgumentParser) -> None:
    from signals.fetch import fetch_arguments

    fetch_arguments(p)


VERBS = {
    "ingest": Verb(ingest, _ingest_args, "python -m signals ingest tests/data/native_example.jsonl --store /tmp/s.duckdb"),
    "stats": Verb(stats, _stats_args, "python -m signals stats --store /tmp/s.duckdb"),
    "quarantine": Verb(quarantine, _quarantine_args,
                       "python -m signals quarantine --reason malformed_json --limit 20 --store /tmp/s.duckdb"),
    "build": Verb(build, build_args, "python -m signals build data=demo split.method=user --store /tmp/s.duckdb",
                  overrides=True),
    "snapshots": Verb(snapshots, snapshots_args, "python -m signals snapshots --store /tmp/s.duckdb"),
    "optout": Verb(optout, _users_args, "python -m signals optout alice --store /tmp/s.duckdb"),
    "forget": Verb(forget, _forget_args, "python -m signals forget bob --store /tmp/s.duckdb"),
    "retain": Verb(retain, _retain_args, "python -m signals retain --days 365 --store /tmp/s.duckdb"),
    "sources": Verb(sources, example="python -m signals sources"),
    "fetch": Verb(fetch, _fetch_args, "python -m signals fetch --list"),
    "export": Verb(export, _export_args,
                   "python -m signals export data/snapshots/demo-ab12 --to openai-sft --out /tmp/oai"),
}


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m signals", "The signal store: ingest user feedback logs, build datasets, "
                   "apply privacy requests.", VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
