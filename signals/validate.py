"""Check records by the ingest rules without a store: what a live API answers 422 with.

    problems = RecordChecker().check([{"event_id": "e1", "interaction_id": "i1", "kind": "rate"}])
    # [{"row": 1, "field": "ts", "reason": "missing_field", "detail": "..."}]

The gateway's feedback endpoint must refuse exactly what the nightly ingest would
quarantine, so it runs the same SQL (signals/sql/ingest_*.sql) on a private in-memory
store: one record in, its quarantine rows out, nothing kept. It never touches the
signal store (that has one writer, the nightly job).
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path


class RecordChecker:
    """A reusable in-memory store; `check` is thread-safe (one record set at a time)."""

    def __init__(self, max_chars: int = 1_000_000):
        from signals import keys
        from signals.ingest import _setup
        from signals.store import open_store

        self.max_chars = max_chars
        self._lock = threading.Lock()
        self._con = open_store(":memory:")
        _setup(self._con)
        keys.install(self._con)          # in memory: a key for this connection only, no file
        self._con.execute("SET VARIABLE ingest_forgets = false")
        self._dir = tempfile.TemporaryDirectory(prefix="signals-check-")
        self._n = 0

    def check(self, records: list[dict]) -> list[dict]:
        """Quarantine rows ({row, field, reason, detail}) the ingest would give `records`; [] when all pass."""
        from signals.ingest import ingest_file

        with self._lock:
            self._n += 1
            path = Path(self._dir.name) / f"check-{self._n}.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            try:
                out = ingest_file(self._con, path, max_chars=self.max_chars)
                rows = self._con.execute(
                    "SELECT source_row, field, reason, detail FROM quarantine WHERE ingest_id = ? "
                    "ORDER BY source_row", [out.get("ingest_id")]).fetchall()
            finally:
                path.unlink(missing_ok=True)
                for table in ("quarantine", "feedback", "interactions", "ingests"):
                    self._con.execute(f"DELETE FROM {table}")   # fixed names: nothing is kept
        return [{"row": r[0], "field": r[1], "reason": r[2], "detail": r[3]} for r in rows]

    def close(self) -> None:
        self._con.close()
        self._dir.cleanup()
