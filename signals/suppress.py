"""The suppression list: who a live service may serve but must not log.

    suppress.refresh(con, "data/signal.duckdb")       # after optout / forget / ingest
    users = suppress.Suppressed("data/signal.duckdb")  # in the gateway: no store connection
    users.contains("alice")                           # reloads when the file changes

The store has one writer (the nightly job holds it for long stretches), so the gateway
must not open it on the request path. Instead the store's privacy state is published
beside it as `<store>.suppress`: a JSON list of the keyed hashes (signals/keys.py) of
every opted-out and forgotten user, never a raw id. The gateway hashes each request's
user id under the same key (`$SIGNALS_KEY` or `<store>.key`) and looks it up.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from signals import keys


def list_path(store: str | os.PathLike) -> Path:
    return Path(f"{Path(store).resolve()}.suppress")


def refresh(con, store: str | os.PathLike) -> Path:
    """Write `<store>.suppress` from the store's opt-outs and tombstones (atomic replace)."""
    keys.install(con, store)
    hashes = [r[0] for r in con.execute(
        "SELECT user_hash FROM tombstones UNION SELECT keyed_hash(user_id) FROM optouts "
        "ORDER BY 1").fetchall()]
    path = list_path(store)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"scheme": keys.SCHEME, "users": hashes}) + "\n")
    tmp.replace(path)
    return path


def read_key(store: str | os.PathLike) -> bytes | None:
    """The store's key without a connection: `$SIGNALS_KEY`, else the key file; None if neither."""
    if os.environ.get(keys.ENV_KEY):
        return keys._decode(os.environ[keys.ENV_KEY], f"${keys.ENV_KEY}")
    path = keys.key_file(Path(store).resolve())
    return keys._decode(path.read_text(), f"key file {path}") if path and path.is_file() else None


class Suppressed:
    """`<store>.suppress` as a set of keyed hashes, reloaded when its mtime changes."""

    def __init__(self, store: str | os.PathLike):
        self.store = Path(store)
        self.path = list_path(store)
        self._stamp = None
        self._hashes: frozenset[str] = frozenset()
        self._key: bytes | None = None
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> bool:
        """Re-read the list if it changed; True when it did."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        body = json.loads(self.path.read_text())
        with self._lock:
            self._hashes = frozenset(body.get("users", []))
            self._key = read_key(self.store)
            self._stamp = stamp
        return True

    def __len__(self) -> int:
        return len(self._hashes)

    def contains(self, user_id: str | None) -> bool:
        if not user_id or not self._hashes:
            return False
        if self._key is None:           # a list we cannot match: log nobody rather than the wrong people
            return True
        return keys.keyed(self._key, str(user_id)) in self._hashes
