"""The gateway's options: one schema (`Serve`) composed from conf/serve.yaml with overrides.

    python -m serve gateway port=8080 canary_share=0.1 engine.kind=vllm engine.python=.venv-vllm/bin/python
    python -m serve gateway engine.url=http://127.0.0.1:8001        # attach to a running engine
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Engine:
    kind: str = "transformers"       # transformers (`transformers serve`) | vllm
    url: str | None = None           # an engine of that kind already running here: nothing is started
    python: str | None = None        # interpreter that runs the engine (vLLM lives in its own venv)
    host: str = "127.0.0.1"
    port: int = 8001
    base_model: str | None = None    # vllm: the base model LoRA adapters are served on
    start_timeout_s: float = 300.0   # vLLM on CPU starts in about 2 minutes
    dtype: str = "auto"
    args: list[str] = field(default_factory=list)    # extra engine arguments, passed as given


@dataclass
class Capture:
    landing: str = "data/landing"    # daily JSONL files `gateway-YYYY-MM-DD.jsonl`, ingested unchanged
    queue_size: int = 10000          # log lines waiting for the writer; beyond it lines are dropped
    flush_ms: int = 200              # the writer flushes (and fsyncs) at least this often
    redact_pii: bool = False         # redact e-mails, phone numbers, ... before writing
    enabled: bool = True


@dataclass
class Limits:
    max_body_bytes: int = 1_048_576  # 413 above this
    requests_per_minute: float = 6000.0  # per API key, i.e. per app (token bucket); 429 above; 0 = off
    burst: int = 500
    upstream_timeout_s: float = 300.0


@dataclass
class Serve:
    host: str = "127.0.0.1"
    port: int = 8080
    pointer_dir: str = "runs"        # {pointer_dir}/production.json, canary.json (eval promote)
    canary_share: float = 0.0        # share of users (sticky by user id) sent to the canary alias
    reload_s: float = 1.0            # how often the alias pointers and the suppression list are checked
    keys_file: str = "data/serve/keys.json"   # hashed API keys (python -m serve keys add APP)
    require_keys: bool = True
    store: str = "data/signal.duckdb"         # only its sidecar files are read: <store>.suppress, <store>.key
    engine: Engine = field(default_factory=Engine)
    capture: Capture = field(default_factory=Capture)
    limits: Limits = field(default_factory=Limits)


def register_schema() -> None:
    from signals.config import register

    register(None, "serve_schema", Serve)


def compose(overrides: list[str]):
    """conf/serve.yaml with overrides, checked against `Serve` (a misspelled key exits 2)."""
    from signals.config import ConfigError
    from signals.config import compose as compose_tree

    register_schema()
    cfg = compose_tree(overrides, config_name="serve", schemas={"": Serve})
    if not 0.0 <= float(cfg.canary_share) <= 1.0:
        raise ConfigError(f"canary_share={cfg.canary_share}: a share between 0 and 1")
    if cfg.engine.kind not in ("transformers", "vllm"):
        raise ConfigError(f"engine.kind={cfg.engine.kind!r}: one of transformers, vllm "
                          "(engine.url=http://HOST:PORT attaches to one already running)")
    return cfg
