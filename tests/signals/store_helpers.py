"""Small stores for builder tests, written straight into the 0001 schema tables.

    s = TinyStore(tmp_path / "s.duckdb")
    i = s.interaction("hi", "hello", user="u1")      # returns the interaction id
    s.feedback(i, "edit", edited_text="Hello!")
    s.close()                                         # then build_snapshot(recipe, s.path, ...)

Times default to a fixed clock that advances one minute per record, so tests are
deterministic and feedback follows its interaction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from signals.store import open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class TinyStore:
    def __init__(self, path: Path | str):
        self.path = str(path)
        self.con = open_store(self.path)
        self.n_int = self.con.execute("SELECT count(*) FROM interactions").fetchone()[0]
        self.n_ev = self.con.execute("SELECT count(*) FROM feedback").fetchone()[0]
        last = self.con.execute("SELECT max(ts) FROM (SELECT ts FROM interactions UNION ALL "
                                "SELECT ts FROM feedback)").fetchone()[0]
        self.clock = max(T0, last) if last else T0

    def tick(self, minutes: float = 1.0) -> datetime:
        self.clock += timedelta(minutes=minutes)
        return self.clock

    def interaction(self, prompt, completion: str, *, user: str | None = "u1", session: str | None = None,
                    app: str = "app", task: str = "task", model: str = "m0", ts: datetime | None = None,
                    iid: str | None = None) -> str:
        """Add one interaction; `prompt` is a string (one user message) or chat messages."""
        self.n_int += 1
        iid = iid or f"i{self.n_int:05d}"
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        self.con.execute(
            "INSERT INTO interactions (interaction_id, ts, user_id, session_id, app, task, model_id, prompt, completion) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [iid, ts or self.tick(), user, session or (f"{user}-s" if user else None), app, task, model,
             json.dumps(messages), completion])
        return iid

    def feedback(self, iid: str, kind: str, *, edited_text: str | None = None, score: float | None = None,
                 other: str | None = None, ts: datetime | None = None, event_id: str | None = None) -> str:
        self.n_ev += 1
        event_id = event_id or f"e{self.n_ev:05d}"
        self.con.execute(
            "INSERT INTO feedback (event_id, interaction_id, ts, kind, edited_text, score, other_interaction_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [event_id, iid, ts or self.tick(), kind, edited_text, score, other])
        return event_id

    def shown(self, prompt, completion: str, kind: str, **kw) -> str:
        """An interaction with one feedback event of `kind` (edit/rate args pass through)."""
        fb = {k: kw.pop(k) for k in ("edited_text", "score", "other") if k in kw}
        iid = self.interaction(prompt, completion, **kw)
        self.feedback(iid, kind, **fb)
        return iid

    def optout(self, user: str) -> None:
        self.con.execute("INSERT INTO optouts VALUES (?, ?)", [user, self.clock])

    def tombstone(self, user: str) -> None:
        from signals import keys

        keys.install(self.con)                  # tombstones hold keyed hashes (signals/keys.py)
        self.con.execute("INSERT INTO tombstones VALUES (keyed_hash(?), ?)", [user, self.clock])

    def setting(self, key: str, value: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", [key, value])

    def close(self) -> None:
        self.con.close()
