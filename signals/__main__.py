"""The signal store CLI: `python -m signals COMMAND --help`.

    python -m signals ingest logs/ --db data/signal.duckdb      # files, folders, globs
    python -m signals ingest hh.jsonl.gz --source hh-rlhf       # a mapping from conf/source/
    python -m signals stats --json
    python -m signals quarantine --reason malformed_json --limit 20
    python -m signals optout alice ; python -m signals forget bob ; python -m signals retain --days 365

COMMANDS maps each subcommand to (function, add_arguments); the function's docstring is
its help. Heavy modules are imported inside the functions, so `--help` stays fast.
Exit codes: 0 ok, 1 quarantined records under --strict, 2 usage or input errors,
3 the store is locked by another process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# ---------------------------------------------------------------- shared options


def _db(p: argparse.ArgumentParser, wait: float = 10.0) -> None:
    p.add_argument("--db", default=None,
                   help="store file (default: $SIGNALS_DB or data/signal.duckdb)")
    p.add_argument("--wait", type=float, default=wait, metavar="SECONDS",
                   help=f"wait this long for another writer to finish (default {wait:g})")


def _store(args, read_only: bool = False):
    from signals.store import open_store
    from signals.store import default_db

    return open_store(args.db or default_db(), read_only=read_only, wait=args.wait)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------- ingest


def ingest(args) -> int:
    """Ingest JSONL(.gz), JSON, Parquet (hive folders too) or CSV files, folders or globs.
    Invalid records go to quarantine with their row and reason; valid ones next to them are
    kept. Re-ingesting a file is a no-op. Each file is stored whole or not at all."""
    from signals.ingest import ingest_paths

    s = ingest_paths(args.paths, db=args.db, source=args.source, wait=args.wait,
                     max_record_chars=args.max_chars, progress=None if not args.json else False)
    if args.json:
        _print_json(s)
    else:
        ingested = [f for f in s["files"] if f["status"] == "ingested"]
        print(f"{len(ingested)} file(s) ingested, {s['skipped_files']} already ingested (skipped) -> {s['db']}")
        print(f"records read      {s['records']}")
        print(f"interactions added {s['interactions']}")
        print(f"feedback added    {s['feedback']}")
        print(f"duplicates skipped {s['duplicates']}")
        if s["forgotten"]:
            print(f"forgotten users' records skipped {s['forgotten']}")
        print(f"pending feedback  {s['pending']}  (waiting for their interaction)")
        print(f"quarantined       {s['quarantined']}" +
              ("  " + ", ".join(f"{k} {v}" for k, v in s["quarantine"].items()) if s["quarantine"] else ""))
        if s["quarantined"]:
            print("  see: python -m signals quarantine --limit 20")
    if args.strict and s["quarantined"]:
        print(f"--strict: {s['quarantined']} record(s) quarantined", file=sys.stderr)
        return 1
    return 0


def _ingest_args(p):
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, folder or glob (quote globs)")
    _db(p)
    p.add_argument("--source", default=None,
                   help="mapping name in conf/source/ (hh-rlhf, defacto, mlqe-pe, mlqe-da, finegrained-qa, "
                        "openai) or a YAML path; default: native schema, chat-completion logs detected")
    p.add_argument("--strict", action="store_true", help="exit 1 when any record was quarantined")
    p.add_argument("--max-chars", type=int, default=None,
                   help="largest record in characters (default: setting max_record_chars or 1,000,000)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


# ---------------------------------------------------------------- stats, quarantine


def stats(args) -> int:
    """Counts: interactions, feedback by kind, pending, quarantine by reason, users,
    opted-out and forgotten users, per source. --json keys are stable (see README)."""
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
    _db(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def quarantine(args) -> int:
    """Show or export quarantined records (file, row, reason, field, detail, raw)."""
    from signals.stats import quarantine_rows

    con = _store(args, read_only=True)
    try:
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
    print(f"{len(rows)} record(s)")
    return 0


def _quarantine_args(p):
    _db(p)
    p.add_argument("--reason", default=None, help="only this reason (e.g. malformed_json)")
    p.add_argument("--limit", type=int, default=None, help="at most N records")
    p.add_argument("--export", default=None, metavar="FILE", help="write to FILE (.jsonl, .csv or .parquet)")


# ---------------------------------------------------------------- privacy


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
    """Forget users: delete their interactions, feedback (pending too) and quarantined records,
    keep a hashed tombstone so re-ingesting old logs does not bring them back, and report the
    dataset snapshots that contained them (revoked when the builder supports it)."""
    from signals.privacy import forget as run

    con = _store(args)
    try:
        r = run(con, args.users)
    finally:
        con.close()
    if args.json:
        _print_json(r)
    else:
        print(f"forgot {r['users']} user(s): deleted {r['interactions']} interactions, {r['feedback']} feedback "
              f"events, {r['quarantine']} quarantined records")
        if r["snapshots"]:
            print(f"snapshots that held their data ({'revoked' if r['revoked'] else 'NOT revoked: rebuild them'}): "
                  + ", ".join(r["snapshots"]))
        else:
            print("no snapshot held their data")
    return 0


def _users_args(p):
    p.add_argument("users", nargs="+", metavar="USER", help="user_id values")
    _db(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def retain(args) -> int:
    """Purge interactions, feedback and quarantined records older than N days
    (default: the saved policy; --save stores N as the policy for later runs)."""
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
    _db(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def sources(args) -> int:
    """List the source mappings in conf/source/."""
    from signals.sources import available, load_mapping

    for name in available():
        m = load_mapping(name)
        print(f"{name:<16} {m.get('description', '').strip().splitlines()[0] if m.get('description') else ''}")
    return 0


COMMANDS = {
    "ingest": (ingest, _ingest_args),
    "stats": (stats, _stats_args),
    "quarantine": (quarantine, _quarantine_args),
    "optout": (optout, _users_args),
    "forget": (forget, _users_args),
    "retain": (retain, _retain_args),
    "sources": (sources, lambda p: None),
}

# ---------------------------------------------------------------- dataset builder (issue 4)
# The builder adds its subcommands here (signals/build_cli.py imports signals.build lazily).
from signals.build_cli import build, build_args, snapshots, snapshots_args  # noqa: E402

COMMANDS["build"] = (build, build_args)
COMMANDS["snapshots"] = (snapshots, snapshots_args)
# -------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m signals",
        description="The DuckDB signal store: ingest user feedback logs, inspect them, and apply privacy requests.",
        epilog="Store: --db FILE, else $SIGNALS_DB, else data/signal.duckdb. Run `python -m signals CMD --help`.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (fn, add_args) in COMMANDS.items():
        doc = (fn.__doc__ or "").strip()
        p = sub.add_parser(name, help=" ".join(doc.split(". ")[0].split()).rstrip(".") + ".", description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_args(p)
    args = parser.parse_args(argv)
    fn = COMMANDS[args.command][0]
    from signals.store import StoreLocked

    try:
        return fn(args) or 0
    except StoreLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("TZ", "UTC")
    sys.exit(main())
