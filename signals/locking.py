"""Open the store as its one writer, waiting for another process to finish.

DuckDB has no lock waiting: while one process holds the file read-write, every other
connect fails at once with "Could not set lock on file ... (PID n)". `open_store`
retries until `wait` seconds have passed, then raises `StoreLocked` naming the holder.
"""

from __future__ import annotations

import re
import time

import duckdb

from signals.store import connect


class StoreLocked(RuntimeError):
    """Another process holds the store; the message names its PID."""


def holder_pid(message: str) -> int | None:
    """The PID DuckDB names in a lock error, if any."""
    m = re.search(r"PID (\d+)", message)
    return int(m.group(1)) if m else None


def open_store(path: str, *, read_only: bool = False, wait: float = 0.0, poll: float = 0.2):
    """`signals.store.connect`, retried while another process holds the lock."""
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            con = connect(path, read_only=read_only)
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
