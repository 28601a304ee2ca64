"""Erasure that reaches every copy the store side owns, with a receipt and a check.

    report = forget("data/signal.duckdb", ["bob"])     # privacy.forget + rewrite + receipt
    found = verify("data/signal.duckdb", ["bob"])      # [] when nothing of bob remains

`forget` runs `signals.privacy.forget` on the store (tables, quarantine, pending
feedback, the judge's cache, keyed tombstones, revoked snapshots' files) and then
rewrites the store file: DuckDB's DELETE leaves the deleted text in freed blocks, even
after CHECKPOINT and VACUUM, so the live tables are copied into a new file (`ATTACH`,
`COPY FROM DATABASE`) which then replaces the old one in one rename. The write
connection, and with it the store's one-writer lock, is held until the new file is in
place; the old file stays until the rename succeeds (a crash before it leaves the store
as it was, plus a `.<name>.rewrite-*` file that the next rewrite removes).

Each forget writes a receipt, `<store folder>/erasure-receipts/<time>-<n>.json`: when,
how many users (no ids, no text), what was deleted in which table, the snapshots
revoked with their paths, and the store's size before and after the rewrite.

Cost, measured once (2 shared cores, nice'd, bench/bench_build.py's generator): a store of
1M feedback events and 714k interactions (238 MiB); forgetting 10 users (631
interactions) took 2.1 s without the rewrite and 19.9 s with it (the rewrite 18.5 s,
249.7 MB -> 225.7 MB), peak RSS 679 MiB. The rewrite is linear in the store's size.

`verify` looks for what remains of the users: rows naming them in every table
(quarantine under any JSON escaping), plain ids in snapshot membership, snapshots that
held them and still have files, the Parquet files of every snapshot in the catalog,
judge verdicts quoting them, and the store file's bytes (the `.wal` too). Not covered
here (owned by other layers): eval per-example files and the dashboard (eval/),
backups and copies made outside the store.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from signals import keys, privacy, snapshot
from signals.store import DEFAULT_WAIT, default_db, open_store

RECEIPTS = "erasure-receipts"
BYTES_SCAN_MAX_USERS = 100_000     # the byte scan of the store file compiles one pattern per 2,000 ids


def forget(db: str | os.PathLike | None, users: list[str], *, wait: float = DEFAULT_WAIT,
           new_key: bool = False, rewrite: bool = True) -> dict:
    """Forget `users` in the store `db`, rewrite the file, write the receipt; returns
    privacy.forget's report plus "store" {rewritten, bytes_before, bytes_after, seconds}
    and "receipt" (its path)."""
    path = Path(db or default_db()).resolve()
    con = open_store(path, wait=wait)
    try:
        report = privacy.forget(con, users, new_key=new_key)
        before = _size(path)
        t0 = time.monotonic()
        if rewrite and report["users"]:
            rewrite_store(con, path)          # closes con
            con = None
        report["store"] = {"path": str(path), "rewritten": bool(rewrite and report["users"]), "bytes_before": before,
                           "bytes_after": _size(path), "seconds": round(time.monotonic() - t0, 3)}
    finally:
        if con is not None:
            con.close()
    report["receipt"] = str(write_receipt(path, report))
    return report


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}.wal")) if p.is_file())


def rewrite_store(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Copy the live database behind `con` (the store at `path`) into a new file and rename
    it over the old one, then close `con`. The lock is held throughout: `con` stays open
    until the new file is in place."""
    con.execute("CHECKPOINT")
    new = path.with_name(f".{path.name}.rewrite-{os.getpid()}")
    for old in path.parent.glob(f".{path.name}.rewrite-*"):
        old.unlink(missing_ok=True)
    name = con.execute("SELECT current_database()").fetchone()[0]
    quoted = str(new).replace("'", "''")
    try:
        con.execute(f"ATTACH '{quoted}' AS erasure_new")
        try:
            con.execute(f'COPY FROM DATABASE "{name}" TO erasure_new')
            con.execute("CHECKPOINT erasure_new")
        finally:
            con.execute("DETACH erasure_new")
        if Path(f"{new}.wal").exists():
            raise RuntimeError(f"rewrite of {path}: {new}.wal left behind; the store was not replaced")
        os.replace(new, path)
        _fsync_dir(path.parent)
    except BaseException:
        new.unlink(missing_ok=True)
        Path(f"{new}.wal").unlink(missing_ok=True)
        con.close()
        raise
    # `con` now points at the unlinked old file. It was checkpointed and has written nothing
    # since (ATTACH/COPY/DETACH only read it), so closing it leaves no WAL beside the new file.
    con.close()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_receipt(path: Path, report: dict) -> Path:
    """The erasure receipt (counts and paths, no ids, no text) under <store folder>/erasure-receipts/."""
    now = datetime.now(UTC)
    receipt = {
        "receipt": "signals erasure",
        "at": now.isoformat(),
        "users": report["users"],
        "store": str(path),
        "tables": {k: report[k] for k in ("interactions", "feedback", "pending", "quarantine", "optouts",
                                           "judgments")},
        "tombstones": "keyed (HMAC-SHA256, signals/keys.py)",
        "snapshots_revoked": report.get("snapshot_files", []),
        "store_rewritten": report.get("store"),
    }
    folder = path.parent / RECEIPTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = now.strftime("%Y%m%dT%H%M%S.%fZ")
    for n in range(1000):
        out = folder / f"{stem}-{n}.json"
        try:
            with open(out, "x", encoding="utf-8") as f:
                json.dump(receipt, f, indent=2, default=str)
                f.write("\n")
            return out
        except FileExistsError:
            continue
    raise RuntimeError(f"could not name a receipt in {folder}")


def amend_receipt(receipt: str | os.PathLike, section: str, data: dict) -> None:
    """Add what a layer above erased (e.g. eval's per-example files) to a written receipt."""
    path = Path(receipt)
    body = json.loads(path.read_text())
    body[section] = data
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, default=str) + "\n")
    tmp.replace(path)


# ----------------------------------------------------------------------------- verify


def verify(db: str | os.PathLike | None, users: list[str], *, wait: float = DEFAULT_WAIT) -> list[str]:
    """What remains of `users` in every copy the store side owns: one line per finding
    (counts and places, no ids), [] when nothing does."""
    path = Path(db or default_db()).resolve()
    users = sorted({str(u) for u in users})
    found: list[str] = []
    if not users:
        return found
    con = open_store(path, read_only=True, wait=wait)
    try:
        found += _verify_tables(con, path, users)
        files = _snapshot_files(con)
    finally:
        con.close()
    found += _verify_parquet(files, users)
    found += _verify_bytes(path, users, wait)
    return found


def _verify_tables(con, path: Path, users: list[str]) -> list[str]:
    out = []
    con.execute("CREATE OR REPLACE TEMP TABLE forget_users AS SELECT u AS user_id FROM unnest(?::VARCHAR[]) t(u)",
                [users])
    con.execute("CREATE OR REPLACE TEMP TABLE forget_ids AS SELECT interaction_id FROM interactions "
                "SEMI JOIN forget_users USING (user_id)")
    checks = {
        "interactions": "SELECT count(*) FROM interactions SEMI JOIN forget_users USING (user_id)",
        "feedback": "SELECT count(*) FROM feedback WHERE user_id IN (SELECT user_id FROM forget_users) "
                    "OR interaction_id IN (SELECT interaction_id FROM forget_ids)",
        "optouts": "SELECT count(*) FROM optouts SEMI JOIN forget_users USING (user_id)",
        "snapshot_members (plain user ids)": "SELECT count(*) FROM snapshot_members "
                                             "SEMI JOIN forget_users USING (user_id)",
        "judgments with no recorded subject (pre-0004 cache rows)":
            "SELECT count(*) FROM judgments WHERE key NOT IN (SELECT key FROM judgment_subjects)",
    }
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'live_outcomes'").fetchone()[0]:
        checks["live_outcomes"] = "SELECT count(*) FROM live_outcomes SEMI JOIN forget_users USING (user_id)"
    for where, q in checks.items():
        n = con.execute(q).fetchone()[0]
        if n:
            out.append(f"{where}: {n} row(s)")
    n = con.execute(f"SELECT count(*) FROM ({privacy.QUARANTINE_MATCHES})").fetchone()[0]
    if n:
        out.append(f"quarantine: {n} record(s) (by user_id, parsed or escaped in the raw line)")
    try:
        key = keys.load_key(con, path) if (os.environ.get(keys.ENV_KEY) or
                                          (keys.key_file(path) and keys.key_file(path).is_file())) else None
    except keys.KeyMissing as e:
        out.append(f"key: {e}")
        key = None
    if key is None:
        out.append(f"tombstones: cannot be checked without the store's key ({keys.key_file(path)} or ${keys.ENV_KEY})")
    else:
        hashes = [keys.keyed(key, u) for u in users]
        n = con.execute("SELECT count(*) FROM tombstones WHERE user_hash IN (SELECT unnest(?::VARCHAR[]))",
                        [hashes]).fetchone()[0]
        if n < len(users):
            out.append(f"tombstones: {len(users) - n} user(s) have none (an old log would bring them back)")
        rows = con.execute("SELECT DISTINCT s.version, s.path FROM snapshot_members m JOIN snapshots s USING (version) "
                           "WHERE m.user_hash IN (SELECT unnest(?::VARCHAR[])) ORDER BY 1", [hashes]).fetchall()
        for version, recorded in rows:
            where = snapshot.locate(con, version, recorded)
            if where is not None and any((where / k).exists() for k in snapshot.KINDS):
                out.append(f"snapshot {version}: held the user(s) and its files are still at {where}")
    for table, column in (("judgments", "raw"), ("snapshots", "manifest")):
        if len(users) <= 1000:
            n = con.execute(f"SELECT count(*) FROM {table} t WHERE EXISTS (SELECT 1 FROM forget_users u "
                            f"WHERE contains(t.{column}::VARCHAR, u.user_id))").fetchone()[0]
            if n:
                out.append(f"{table}.{column}: {n} row(s) contain a user id")
    return out


def _snapshot_files(con) -> list[Path]:
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'snapshots'").fetchone()[0]:
        return []
    files = []
    for version, recorded in con.execute("SELECT version, path FROM snapshots ORDER BY version").fetchall():
        where = snapshot.locate(con, version, recorded)
        if where is not None:
            files += sorted(where.glob("*/*.parquet"))
    return files


def _verify_parquet(files: list[Path], users: list[str]) -> list[str]:
    out = []
    con = duckdb.connect()
    try:
        con.execute("CREATE TEMP TABLE forget_users AS SELECT u AS user_id FROM unnest(?::VARCHAR[]) t(u)", [users])
        for f in files:
            try:
                n = con.execute("SELECT count(*) FROM read_parquet(?) WHERE user_id IN "
                                "(SELECT user_id FROM forget_users)", [[str(f)]]).fetchone()[0]
            except duckdb.Error as e:
                out.append(f"snapshot file {f}: cannot be read ({str(e).splitlines()[0][:120]}); check it by hand")
                continue
            if n:
                out.append(f"snapshot file {f}: {n} row(s) of the user(s)")
    finally:
        con.close()
    return out


def _variants(user: str) -> set[bytes]:
    """The id as it may sit in the file: plain UTF-8 and JSON-escaped (ASCII escapes too)."""
    return {user.encode("utf-8"), json.dumps(user)[1:-1].encode("ascii"),
            json.dumps(user, ensure_ascii=False)[1:-1].encode("utf-8")}


def _count(data: bytes, pats: list[bytes]) -> int:
    hits = 0
    for i in range(0, len(pats), 2000):
        hits += len(re.findall(b"|".join(re.escape(p) for p in pats[i:i + 2000]), data))
    return hits


def _verify_bytes(path: Path, users: list[str], wait: float) -> list[str]:
    """The store file's bytes (and its WAL): freed blocks keep deleted text until a rewrite.

    An id can also sit inside live text (u1000 inside u10005), so hits are compared with a
    fresh copy of the live data (what a rewrite would write): only the excess is a finding."""
    if len(users) > BYTES_SCAN_MAX_USERS:
        return [f"store file bytes: not scanned ({len(users)} users > {BYTES_SCAN_MAX_USERS}); verify in batches"]
    pats = sorted({v for u in users for v in _variants(u) if v}, key=len, reverse=True)
    files = [f for f in (path, Path(f"{path}.wal")) if f.is_file()]
    hits = sum(_count(f.read_bytes(), pats) for f in files)
    if not hits:
        return []
    live = path.with_name(f".{path.name}.verify-{os.getpid()}")
    live.unlink(missing_ok=True)
    con = duckdb.connect()           # the store attached read-only, the copy read-write
    try:
        src, dst = (str(x).replace("'", "''") for x in (path, live))
        con.execute(f"ATTACH '{src}' AS erasure_src (READ_ONLY)")
        con.execute(f"ATTACH '{dst}' AS erasure_live")
        con.execute("COPY FROM DATABASE erasure_src TO erasure_live")
        con.execute("CHECKPOINT erasure_live")
        con.execute("DETACH erasure_live")
        expected = _count(live.read_bytes(), pats)
    finally:
        con.close()
        live.unlink(missing_ok=True)
        Path(f"{live}.wal").unlink(missing_ok=True)
    if hits <= expected:
        return []
    return [f"store file {path}: {hits - expected} occurrence(s) of a user id in its bytes beyond what the live "
            f"data holds ({expected}): deleted rows in freed blocks; `python -m signals forget` rewrites the file"]
