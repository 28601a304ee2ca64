"""API keys per app: issued once, stored as sha256 hashes, checked on every request.

    kf = KeyFile("data/serve/keys.json")
    token = kf.add("support-app")      # "sk-sig-<key_id>-<secret>": shown once, never stored
    kf.app_for(token)                  # "support-app", or None (unknown or revoked)

A key is 32 random bytes, so a plain sha256 of it cannot be guessed back; the file
(mode 0600) holds key_id, app, hash and dates only. The gateway reloads the file when
it changes, so `keys add` and `keys revoke` take effect without a restart. Keys never
reach a log line, the landing folder or the store: requests are logged by app name.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path

PREFIX = "sk-sig-"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class KeyFile:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._stamp = None
        self._apps: dict[str, str] = {}
        self._lock = threading.Lock()

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        try:
            rows = json.loads(self.path.read_text()).get("keys", [])
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"{self.path}: not a keys file ({e}); fix or remove it") from None
        return [r for r in rows if isinstance(r, dict)]

    def _write(self, rows: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": rows}, f, indent=2)
            f.write("\n")
        tmp.replace(self.path)

    def add(self, app: str) -> str:
        from signals.recipe import name_problem

        problem = name_problem(app)
        if problem:
            raise ValueError(f"app {app!r}: {problem}")
        key_id = secrets.token_hex(4)
        token = f"{PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        rows = self._read()
        rows.append({"key_id": key_id, "app": app, "sha256": digest(token),
                     "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "revoked_at": None})
        self._write(rows)
        return token

    def revoke(self, app: str) -> int:
        rows, n = self._read(), 0
        for r in rows:
            if r.get("app") == app and not r.get("revoked_at"):
                r["revoked_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                n += 1
        self._write(rows)
        return n

    def list(self) -> list[dict]:
        return [{k: r.get(k) for k in ("key_id", "app", "created_at", "revoked_at")} for r in self._read()]

    def reload(self) -> None:
        """Re-read the file when it changed (cheap: one stat)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        apps = {r["sha256"]: r["app"] for r in self._read() if not r.get("revoked_at") and r.get("sha256")}
        with self._lock:
            self._apps, self._stamp = apps, stamp

    def __len__(self) -> int:
        return len(self._apps)

    def app_for(self, token: str | None) -> str | None:
        if not token or not token.startswith(PREFIX) or len(token) > 200:
            return None
        return self._apps.get(digest(token))
