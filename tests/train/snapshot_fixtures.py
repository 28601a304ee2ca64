"""Snapshots written the way contract 1 says, independently of train/ and signals/.

`write_snapshot(root)` writes `manifest.json` and `{sft,pref,kto}/{train,eval}.parquet`
with the contract's columns (TRL columns + extras), so train's reader is tested
against the format itself and not against its own writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MSG = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
EXTRAS = [("interaction_id", pa.string()), ("app", pa.string()), ("task", pa.string()),
          ("user_id", pa.string()), ("origin", pa.string())]
SCHEMAS = {
    "sft": pa.schema([("messages", MSG), *EXTRAS]),
    "pref": pa.schema([("prompt", MSG), ("chosen", MSG), ("rejected", MSG), *EXTRAS]),
    "kto": pa.schema([("prompt", MSG), ("completion", MSG), ("label", pa.bool_()), *EXTRAS]),
}
WORDS = "please help me with my order refund account password email table query code".split()


def _text(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(n))


def rows(kind: str, n: int, offset: int = 0, lengths: tuple[int, ...] = (4, 9, 16)) -> list[dict]:
    out = []
    for j in range(n):
        i = offset + j
        prompt = [{"role": "user", "content": f"Q{i}: " + _text(i, lengths[i % len(lengths)])}]
        good = [{"role": "assistant", "content": f"Hi, {_text(i + 1, 6)}. Best regards"}]
        bad = [{"role": "assistant", "content": _text(i + 2, 3)}]
        extra = {"interaction_id": f"i{i}", "app": "support", "task": "reply",
                 "user_id": f"u{i % 5}" if i % 4 else None, "origin": "accept"}
        if kind == "sft":
            out.append({"messages": prompt + good, **extra})
        elif kind == "pref":
            out.append({"prompt": prompt, "chosen": good, "rejected": bad, **extra})
        else:
            out.append({"prompt": prompt, "completion": good if i % 2 else bad,
                        "label": bool(i % 2), **extra})
    return out


def write_snapshot(root: str | Path, version: str = "fixture-0001", n_train: int = 32,
                   n_eval: int = 8, empty: tuple[str, ...] = ()) -> Path:
    """A complete snapshot folder; kinds in `empty` get 0-row files with the right schema."""
    path = Path(root) / version
    counts = {}
    for kind, schema in SCHEMAS.items():
        (path / kind).mkdir(parents=True, exist_ok=True)
        counts[kind] = {}
        for split, n, off in (("train", n_train, 0), ("eval", n_eval, 10_000)):
            data = [] if kind in empty else rows(kind, n, off)
            pq.write_table(pa.Table.from_pylist(data, schema=schema), path / kind / f"{split}.parquet")
            counts[kind][split] = len(data)
    manifest = {"version": version, "recipe": {"name": "fixture"}, "counts": counts,
                "exclusions": {}, "watermark": {}, "builder_version": "tests/1",
                "created_at": "2026-01-01T00:00:00+00:00", "redactions": {},
                "kto_weights": {"desirable_weight": 1.0, "undesirable_weight": 1.0}}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return path
