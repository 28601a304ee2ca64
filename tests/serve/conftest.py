"""Real parts for the gateway tests: `transformers serve` on the tiny model, the gateway as
a `python -m serve` process on 127.0.0.1, real HTTP clients. Loopback only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode}: {log.read_text()[-3000:] if log else ''}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout}s: {log.read_text()[-3000:] if log else ''}")


@pytest.fixture(scope="session")
def engine_url(tmp_path_factory):
    """`transformers serve` started through serve.engine (the gateway's own launcher)."""
    from omegaconf import OmegaConf

    from serve.engine import Engine
    from serve.settings import Engine as EngineSettings

    cfg = OmegaConf.structured(EngineSettings(port=free_port(), start_timeout_s=180))
    engine = Engine.from_config(cfg, log_dir=tmp_path_factory.mktemp("engine"))
    engine.start()
    yield engine.url
    engine.stop()


@pytest.fixture(scope="session")
def second_model_dir(tmp_path_factory) -> Path:
    """Another tiny model (other seed): the run an alias moves to."""
    from train.models import build_tiny

    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-b", seed=1)


def write_pointer(pointer_dir: Path, alias: str, run_id: str, model_path: Path, **extra) -> None:
    pointer_dir.mkdir(parents=True, exist_ok=True)
    tmp = pointer_dir / f".{alias}.tmp"
    tmp.write_text(json.dumps({"alias": alias, "run_id": run_id, "model_path": str(model_path), **extra}))
    tmp.replace(pointer_dir / f"{alias}.json")


class Gateway:
    """A `python -m serve gateway` process and the paths it uses."""

    def __init__(self, root: Path, engine_url: str, overrides: list[str]):
        from serve.keys import KeyFile

        self.root = root
        self.pointers, self.landing = root / "runs", root / "landing"
        self.store = root / "signal.duckdb"
        self.keys_file = root / "keys.json"
        self.key = KeyFile(self.keys_file).add("test-app")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "gateway.log"
        self.cmd = [sys.executable, "-m", "serve", "gateway", f"port={self.port}", f"pointer_dir={self.pointers}",
                    f"keys_file={self.keys_file}", f"store={self.store}", f"capture.landing={self.landing}",
                    f"engine.url={engine_url}", "reload_s=0.2", *overrides]
        self.proc = None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def start(self) -> Gateway:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "SIGNALS_QUIET": "1"})
        wait_for(f"{self.url}/health", self.proc, timeout=60, log=self.log)
        return self

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def chat(self, client=None, user: str | None = None, **body):
        payload = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2, **body}
        if user:
            payload["user"] = user
        return (client or httpx).post(f"{self.url}/v1/chat/completions", json=payload, headers=self.headers,
                                      timeout=60)

    def records(self) -> list[dict]:
        """Every line in the landing folder's published files."""
        out = []
        for f in sorted(self.landing.glob("gateway-*.jsonl")):
            out += [json.loads(line) for line in f.read_text().splitlines() if line]
        return out


@pytest.fixture
def gateway_factory(tmp_path, engine_url, tiny_model_dir):
    """make(*overrides) -> a started Gateway whose production alias serves the tiny model."""
    made = []

    def make(*overrides: str, start: bool = True) -> Gateway:
        gw = Gateway(tmp_path / f"gw{len(made)}", engine_url, list(overrides))
        write_pointer(gw.pointers, "production", "tiny-a", tiny_model_dir)
        made.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in made:
        gw.stop(signal.SIGKILL) if gw.proc and gw.proc.poll() is None else None
