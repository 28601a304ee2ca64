"""OpenAI fine-tuning JSONL from a snapshot: the chat format for SFT, the preference format
(DPO) for pairs (platform.openai.com/docs/guides/supervised-fine-tuning and
direct-preference-optimization). conf/source/openai-sft.yaml and openai-pref.yaml read them back."""

from __future__ import annotations

import json
from pathlib import Path


def _msgs(ms) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in ms]


def line(kind: str, row: dict) -> dict:
    """One snapshot row as one fine-tuning line.

    >>> line("sft", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    {'messages': [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}]}
    """
    if kind == "sft":
        return {"messages": _msgs(row["messages"])}
    return {"input": {"messages": _msgs(row["prompt"])}, "preferred_output": _msgs(row["chosen"]),
            "non_preferred_output": _msgs(row["rejected"])}


def write(snap, kind: str, out: Path) -> dict:
    """out/KIND/{train,eval}.jsonl; returns {relative path: rows}."""
    from signals.snapshot import COLUMNS, SPLITS

    (out / kind).mkdir()
    files = {}
    for split in SPLITS:
        path = out / kind / f"{split}.jsonl"
        n = 0
        with open(path, "w", encoding="utf-8") as f:
            for batch in snap.table(kind, split, COLUMNS[kind]).to_batches(max_chunksize=4096):
                for row in batch.to_pylist():
                    f.write(json.dumps(line(kind, row), ensure_ascii=False) + "\n")
                    n += 1
        files[f"{kind}/{split}.jsonl"] = n
    return files
