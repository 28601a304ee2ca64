"""The inference engine behind the gateway: an existing server, started here or already running.

    engine = Engine.from_config(cfg.engine, log_dir="data/serve")
    engine.start()                      # waits for GET /health; ServeError with the log tail if it dies
    engine.model_name(target)           # what to put in the request's "model" field
    await engine.prepare(client, target)   # load it before any user request is routed there
    engine.stop()

kinds:
  transformers  `transformers serve` (continuous batching off; loads the model a request
                names, a folder or a LoRA adapter folder, on demand). Runs in the project's venv.
  vllm          vLLM's OpenAI server on `engine.base_model`; LoRA runs are loaded at run time
                (`/v1/load_lora_adapter`) under their run id. vLLM wants its own venv
                (`engine.python=.venv-vllm/bin/python`, see docs/serve.md).
`engine.url` attaches to an engine of that kind that is already running; nothing is started.

The project does not batch or generate itself: every token comes from the engine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from serve import ServeError


class Engine:
    def __init__(self, kind: str, url: str, *, command: list[str] | None = None, env: dict | None = None,
                 log_path: Path | None = None, start_timeout_s: float = 300.0, base_model: str | None = None):
        self.kind, self.url = kind, url.rstrip("/")
        self.command, self.env, self.log_path = command, env, log_path
        self.start_timeout_s = start_timeout_s
        self.base_model = base_model
        self.proc: subprocess.Popen | None = None
        self._loaded: set[str] = set()

    @classmethod
    def from_config(cls, ecfg, log_dir: str | os.PathLike = "data/serve") -> Engine:
        kind = str(ecfg.kind)
        if ecfg.url:
            return cls(kind, str(ecfg.url), base_model=str(ecfg.base_model) if ecfg.base_model else None)
        python = str(ecfg.python or sys.executable)
        host, port = str(ecfg.host), int(ecfg.port)
        env = dict(os.environ)
        if kind == "transformers":
            command = [python, "-c", "import sys; from transformers.cli.transformers import main; "
                       "sys.argv[0] = 'transformers'; sys.exit(main())",
                       "serve", "--host", host, "--port", str(port), "--device", "cpu" if not _cuda() else "auto",
                       "--dtype", str(ecfg.dtype), "--log-level", "warning"]
        else:
            if not ecfg.base_model:
                raise ServeError("engine.kind=vllm needs engine.base_model (the model LoRA runs are served on)")
            command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(ecfg.base_model),
                       "--host", host, "--port", str(port), "--enable-lora", "--max-lora-rank", "64",
                       "--max-loras", "2",      # production and canary adapters in the same batch
                       "--dtype", "bfloat16" if str(ecfg.dtype) == "auto" else str(ecfg.dtype)]
            env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        command += [str(a) for a in ecfg.args]
        log = Path(log_dir) / f"engine-{kind}-{port}.log"
        return cls(kind, f"http://{host}:{port}", command=command, env=env, log_path=log,
                   start_timeout_s=float(ecfg.start_timeout_s),
                   base_model=str(ecfg.base_model) if ecfg.base_model else None)

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        """Start the engine process (unless engine.url names a running one) and wait until GET /health answers."""
        if self.command:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True, preexec_fn=_die_with_parent)
            log.close()
        self.wait_healthy()

    def wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServeError(f"the {self.kind} engine exited with {self.proc.returncode} while starting; "
                                 f"its log ({self.log_path}) ends:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServeError(f"the {self.kind} engine at {self.url} did not answer /health within "
                         f"{self.start_timeout_s:g}s (engine.start_timeout_s); log: {self.log_path}")

    def log_tail(self, n: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)

    # ------------------------------------------------------------------ models

    def model_name(self, target) -> str:
        """The engine's name for a run: its folder, its merged folder (a LoRA run on
        `transformers serve`, which cannot load an adapter), its run id (a LoRA on vLLM)."""
        if self.kind == "vllm":
            return target.run_id if target.peft else str(self.base_model)
        if self.kind == "transformers" and target.peft:
            return target.merged_path
        return target.model_path

    async def prepare(self, client, target) -> None:
        """Make the engine hold `target` before requests are routed to it (no cold first request)."""
        name = self.model_name(target)
        if name in self._loaded:
            return
        if self.kind == "transformers" and target.peft and not (Path(name) / "config.json").is_file():
            import asyncio

            await asyncio.to_thread(merge_adapter, target)
        if self.kind == "vllm" and target.peft:
            r = await client.post(f"{self.url}/v1/load_lora_adapter",
                                  json={"lora_name": target.run_id, "lora_path": target.model_path})
            if r.status_code != 200 and "already" not in r.text:
                raise ServeError(f"vLLM refused the LoRA adapter of run {target.run_id}: {r.text[:300]}")
        r = await client.post(f"{self.url}/v1/chat/completions", json={
            "model": name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1})
        if r.status_code != 200:
            raise ServeError(f"the engine could not load run {target.run_id} ({name}): "
                             f"HTTP {r.status_code} {r.text[:300]}")
        self._loaded.add(name)


def merge_adapter(target) -> Path:
    """Merge a LoRA run into its base once, into `target.merged_path` (serve.export.write_merged)."""
    from types import SimpleNamespace

    from serve.export import write_merged

    if not target.base_model:
        raise ServeError(f"run {target.run_id}: a LoRA run's pointer must name its base_model")
    run = SimpleNamespace(run_id=target.run_id, model_path=None, adapter_path=Path(target.model_path),
                          base_model=target.base_model)
    dest = Path(target.merged_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return write_merged(run, dest.parent, {})


def _die_with_parent() -> None:
    """Linux: the engine gets SIGTERM when the process that started it dies, even by SIGKILL,
    so a killed gateway (or test run) leaves no engine holding the port and the memory."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
