"""How a build runs (memory, threads, export chunk size), passed in rather than read at import.

    build_snapshot(recipe, store, root, settings=BuildSettings(memory_limit="4GB"))
    build_snapshot(recipe, store, root)        # BuildSettings.from_env(), read at call time

None of these change the files a build writes: only its speed and memory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import duckdb

ENV = {"memory_limit": "SIGNALS_BUILD_MEMORY", "threads": "SIGNALS_BUILD_THREADS",
       "export_chunk": "SIGNALS_BUILD_CHUNK"}


@dataclass(frozen=True)
class BuildSettings:
    # DuckDB spills to disk beyond this, so a build's memory stays bounded as the store grows
    # (with Arrow's chunks beside it, the peak RSS at 5M events is ~1.6 GiB: bench/bench_build.py).
    memory_limit: str = "1GB"
    # DuckDB's threads (None: DuckDB's default, one per core)
    threads: int | None = None
    # example rows per export chunk: bounds the memory of a chunk's texts
    export_chunk: int = 150_000

    def __post_init__(self):
        memory_mib(self.memory_limit)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"build threads={self.threads!r} ({ENV['threads']}): expected a whole number >= 1")
        if not isinstance(self.export_chunk, int) or self.export_chunk < 1:
            raise ValueError(f"build export_chunk={self.export_chunk!r} ({ENV['export_chunk']}): "
                             "expected a whole number >= 1")

    @classmethod
    def from_env(cls) -> BuildSettings:
        """The defaults, overridden by SIGNALS_BUILD_MEMORY / _THREADS / _CHUNK where set."""
        given = {}
        for field, var in ENV.items():
            value = os.environ.get(var, "").strip()
            if not value:
                continue
            if field == "memory_limit":
                given[field] = value
                continue
            try:
                given[field] = int(value)
            except ValueError:
                raise ValueError(f"{var}={value!r}: expected a whole number") from None
        return cls(**given)

    def apply(self, con: duckdb.DuckDBPyConnection) -> None:
        """Set up the build's connection."""
        con.execute(f"SET memory_limit = '{memory_mib(self.memory_limit)}MiB'")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")   # files are sorted explicitly
        if self.threads is not None:
            con.execute(f"SET threads = {int(self.threads)}")


def memory_mib(size: str) -> int:
    """'1.5GB', '512MiB', ... in MiB (DuckDB's units: KB/MB/GB/TB are powers of 1000)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT])(i?)B", str(size).strip(), re.IGNORECASE)
    if not m:
        raise ValueError(f"build memory_limit={size!r} ({ENV['memory_limit']}): "
                         "expected a size like 1.5GB or 512MiB")
    power = "KMGT".index(m[2].upper()) + 1
    return max(1, int(float(m[1]) * (1024 if m[3] else 1000) ** power / 2**20))
