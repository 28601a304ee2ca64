"""The DuckDB signal store: one file, schema applied by numbered migrations.

    con = connect("data/signal.duckdb")           # read-write, migrated
    con = connect(path, read_only=True)           # readers may share the file

Migrations are `signals/migrations/NNNN_name.sql`, applied in order once each and
recorded in `schema_version`; add a new numbered file, never edit an applied one.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import duckdb

DEFAULT_DB = "data/signal.duckdb"


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


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Apply the migrations this store has not seen, each in its own transaction."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ DEFAULT now())")
    done = {r[0] for r in con.execute("SELECT version FROM schema_version").fetchall()}
    for number, name, sql in migrations():
        if number in done:
            continue
        con.execute("BEGIN")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_version (version, name) VALUES (?, ?)", [number, name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise


def connect(path: str | os.PathLike | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and for writers, create and migrate) the store at `path`."""
    path = Path(path or default_db())
    if read_only:
        if not path.exists():
            raise FileNotFoundError(f"signal store {path} does not exist; ingest something first")
        return duckdb.connect(str(path), read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    migrate(con)
    return con
