"""The DuckDB signal store: one file, one handle, schema applied by numbered migrations.

    con = open_store("data/signal.duckdb")                  # read-write: created and migrated
    con = open_store(path, read_only=True)                  # readers share the file; never creates it
    with transaction(con):                                  # all or nothing
        con.execute(...)

DuckDB has no lock waiting: while one process holds the file read-write, every other
connect fails at once with "Could not set lock on file ... (PID n)". `open_store`
retries until `wait` seconds have passed, then raises `StoreLocked` naming the holder.
A read-only open of a file that does not exist raises `StoreMissing`: a command that
only reads must never leave an empty store behind.

Migrations are `signals/migrations/NNNN_name.sql`, applied in order once each and
recorded in `schema_version`; add a new numbered file, never edit an applied one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

DEFAULT_DB = "data/signal.duckdb"
DEFAULT_WAIT = 10.0     # seconds a command waits for another writer by default


class StoreLocked(RuntimeError):
    """Another process holds the store; the message names its PID."""


class StoreMissing(FileNotFoundError):
    """A reader was pointed at a store file that does not exist."""


def default_db() -> str:
    """`SIGNALS_DB` or data/signal.duckdb."""
    return os.environ.get("SIGNALS_DB", DEFAULT_DB)


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every migration file, in order."""
    out = []
    for f in resources.files("signals.migrations").iterdir():
        if f.name.endswith(".sql") and f.name[:4].isdigit():
            out.append((int(f.name[:4]), f.name, f.read_text()))
    return sorted(out)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT, or ROLLBACK when the block raises: the store is never left half-written."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Apply the migrations this store has not seen, each in its own transaction."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ DEFAULT now())")
    done = {r[0] for r in con.execute("SELECT version FROM schema_version").fetchall()}
    for number, name, sql in migrations():
        if number in done:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute("INSERT INTO schema_version (version, name) VALUES (?, ?)", [number, name])


def holder_pid(message: str) -> int | None:
    """The PID DuckDB names in a lock error, if any."""
    m = re.search(r"PID (\d+)", message)
    return int(m.group(1)) if m else None


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only:
        if not path.is_file():
            raise StoreMissing(f"signal store {path} does not exist (ingest logs first: "
                               f"python -m signals ingest PATH --store {path})")
        return duckdb.connect(str(path), read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        migrate(con)
    except BaseException:
        con.close()
        raise
    return con


def open_store(path: str | os.PathLike | None = None, *, read_only: bool = False,
               wait: float = DEFAULT_WAIT, poll: float = 0.2) -> duckdb.DuckDBPyConnection:
    """The store at `path` (default `default_db()`), retried while another process holds the lock.

    Writers create and migrate the file; readers never create it (`StoreMissing`). Every
    connection works in UTC.
    """
    path = Path(path or default_db())
    deadline = time.monotonic() + max(float(wait), 0.0)
    while True:
        try:
            con = _connect(path, read_only)
            con.execute("SET TimeZone = 'UTC'")
            return con
        except duckdb.IOException as e:
            msg = str(e)
            if "lock" not in msg.lower():
                raise
            if time.monotonic() >= deadline:
                pid = holder_pid(msg)
                who = f"process {pid}" if pid else "another process"
                raise StoreLocked(
                    f"signal store {path} is locked by {who} (a running ingest or other writer); "
                    f"gave up after waiting {wait:g}s. Retry later or pass a longer --wait."
                ) from None
            time.sleep(poll)


@contextmanager
def store(path: str | os.PathLike | None = None, *, read_only: bool = False,
          wait: float = DEFAULT_WAIT) -> Iterator[duckdb.DuckDBPyConnection]:
    """`open_store` as a context manager that always closes the connection."""
    con = open_store(path, read_only=read_only, wait=wait)
    try:
        yield con
    finally:
        con.close()
