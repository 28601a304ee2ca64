"""The serving variants of a run in the signal store (migration 0005_variants.sql).

    with store(path) as con:
        record_variant(con, Variant(run_id="r1", variant="int8", path="runs/x/r1/export/int8/model",
                                    bytes=..., tokens_per_s=..., decision="promote"))
        list_variants(con, "r1")        # [{"variant": "merged", ...}, {"variant": "int8", ...}]
        servable(con, "r1")             # the rows a server may load: the merged model and passed variants

`python -m serve export RUN` writes them (serve/export.py). A variant's gate decision
comes from the eval harness (its evaluation is in `decisions` under `eval_id`); only the
merged model (`reference`) and variants whose decision is `promote` are servable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from signals.store import transaction

DECISIONS = ("promote", "reject", "inconclusive", "reference", "skipped", "unevaluated")
SERVABLE = ("reference", "promote")
COLUMNS = ("run_id", "variant", "variant_run_id", "path", "format", "quantization", "bytes", "weight_bytes",
           "tokens_per_s", "latency_p50_ms", "bench", "eval_id", "decision", "reasons", "created_at")
JSON_COLUMNS = ("quantization", "bench", "reasons")


@dataclass
class Variant:
    run_id: str
    variant: str
    decision: str
    path: str | None = None
    variant_run_id: str | None = None
    format: str | None = None
    quantization: dict | None = None
    bytes: int | None = None
    weight_bytes: int | None = None
    tokens_per_s: float | None = None
    latency_p50_ms: float | None = None
    bench: dict | None = None
    eval_id: str | None = None
    reasons: list[str] = field(default_factory=list)


def folder_bytes(path: str | Path) -> tuple[int, int]:
    """(all files, *.safetensors files) under `path`, in bytes."""
    total = weights = 0
    for f in Path(path).rglob("*"):
        if f.is_file():
            n = f.stat().st_size
            total += n
            weights += n if f.suffix == ".safetensors" else 0
    return total, weights


def record_variant(con, v: Variant) -> None:
    """Insert or replace the (run_id, variant) row."""
    if v.decision not in DECISIONS:
        raise ValueError(f"variant {v.variant}: decision {v.decision!r} is not one of {DECISIONS}")
    row = asdict(v)
    row["created_at"] = datetime.now(UTC)
    for k in JSON_COLUMNS:
        row[k] = json.dumps(row[k], default=str) if row[k] is not None else None
    with transaction(con):
        con.execute(f"INSERT OR REPLACE INTO variants ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(COLUMNS))})", [row[c] for c in COLUMNS])


def list_variants(con, run_id: str | None = None) -> list[dict]:
    """Variant rows (one run's, or all), merged first, then by name."""
    q = f"SELECT {', '.join(COLUMNS)} FROM variants"
    rows = con.execute(q + (" WHERE run_id = ?" if run_id else "") +
                       " ORDER BY run_id, variant <> 'merged', variant", [run_id] if run_id else []).fetchall()
    out = []
    for r in rows:
        d = dict(zip(COLUMNS, r, strict=True))
        for k in JSON_COLUMNS:
            d[k] = json.loads(d[k]) if d[k] else None
        out.append(d)
    return out


def servable(con, run_id: str) -> list[dict]:
    """The rows a server may load: the merged model and the variants the gate passed."""
    return [v for v in list_variants(con, run_id) if v["decision"] in SERVABLE]
