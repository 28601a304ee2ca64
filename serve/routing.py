"""Which served run answers a request: the `production` alias, or `canary` for a sticky share of users.

    routes = Routes("runs", canary_share=0.1)
    routes.refresh()                  # re-read {pointer_dir}/production.json, canary.json if changed
    target = routes.pick("alice")     # Target(alias, run_id, model_path, ...)

The pointer files are what `python -m eval promote` and the nightly promote stage write
(eval/registry.py write_pointer), atomically. A user's bucket is a hash of their id, so
the same user always lands on the same side while the share is unchanged, and raising
the share only moves users from production to canary. Requests without a user id go to
production.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

ALIASES = ("production", "canary")


@dataclass(frozen=True)
class Target:
    alias: str
    run_id: str
    model_path: str            # what the run serves: a model folder, or a LoRA adapter folder
    base_model: str | None
    peft: bool
    run_dir: str | None = None

    @property
    def merged_path(self) -> str:
        """Where a LoRA run's merged model lives (what `python -m serve export` writes too)."""
        root = Path(self.run_dir) if self.run_dir else Path(self.model_path).parent
        return str(root / "export" / "merged")


def bucket(user_id: str) -> float:
    """A user's place in [0, 1): stable across processes and restarts."""
    h = hashlib.sha256(f"canary/{user_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def read_pointer(path: Path) -> Target | None:
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError) as e:
        raise ValueError(f"{path}: unreadable alias pointer ({e})") from None
    if not body.get("run_id") or not body.get("model_path"):
        return None
    return Target(alias=path.stem, run_id=str(body["run_id"]), model_path=str(body["model_path"]),
                  base_model=body.get("base_model"), peft=bool(body.get("peft")), run_dir=body.get("run_dir"))


class Routes:
    def __init__(self, pointer_dir: str | os.PathLike, canary_share: float = 0.0):
        self.dir = Path(pointer_dir)
        self.canary_share = float(canary_share)
        self.current: dict[str, Target] = {}
        self._stamps: dict[str, tuple | None] = {}

    def changed(self) -> dict[str, Target | None]:
        """Aliases whose pointer file changed since the last `apply`, with their new target."""
        out = {}
        for alias in ALIASES:
            path = self.dir / f"{alias}.json"
            try:
                st = path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamps.get(alias, "unset"):
                target = read_pointer(path) if stamp else None
                if target != self.current.get(alias):
                    out[alias] = target
                self._stamps[alias] = stamp
        return out

    def apply(self, alias: str, target: Target | None) -> None:
        """Swap one alias (a dict assignment: requests already routed keep their target)."""
        if target is None:
            self.current.pop(alias, None)
        else:
            self.current[alias] = target

    def pick(self, user_id: str | None, pinned: str | None = None) -> Target | None:
        if pinned in self.current:
            return self.current[pinned]
        canary = self.current.get("canary")
        if canary is not None and user_id and bucket(str(user_id)) < self.canary_share:
            return canary
        return self.current.get("production")
