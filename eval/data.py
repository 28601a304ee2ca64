"""A snapshot's eval splits as validated rows, read through `signals.snapshot` (contract 1).

`signals.snapshot` owns the snapshot (kinds, files, revocation); here each row of an
eval split is checked so a malformed record fails with its file, row and field.
"""

from __future__ import annotations

import math
from pathlib import Path

from eval import EvalError
from signals import snapshot as snapshots
from signals.snapshot import EXTRAS, KINDS, Snapshot


def open_snapshot(path: str | Path, store: str | None = None, run_id: str | None = None) -> Snapshot:
    """The snapshot at `path`; a missing, broken or revoked one is an EvalError."""
    try:
        return snapshots.open(path, store=store)
    except snapshots.SnapshotRevoked as e:
        raise EvalError(f"{e}; run {run_id or '?'} is tainted and is not evaluated") from None
    except snapshots.SnapshotError as e:
        raise EvalError(str(e)) from None


def _messages(value, file: Path, row: int, field: str, *, n: int | None = None) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise EvalError(f"{file} row {row} field {field!r}: expected a non-empty list of messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise EvalError(f"{file} row {row} field {field!r}: each message needs string role and content")
        out.append({"role": m["role"], "content": m["content"]})
    if n is not None and len(out) != n:
        raise EvalError(f"{file} row {row} field {field!r}: expected {n} message(s), got {len(out)}")
    return out


def read_split(snapshot: Snapshot, kind: str, split: str = "eval",
               max_examples: int | None = None) -> list[dict]:
    """Rows of `{kind}/{split}.parquet` as dicts, validated per contract 1.

    sft rows become {"prompt": msgs, "completion": [assistant msg], ...extras};
    pref rows keep prompt/chosen/rejected; kto rows keep prompt/completion/label.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown split kind {kind!r}; expected one of {KINDS}")
    file = snapshot.file(kind, split)
    try:
        rows = snapshot.table(kind, split).to_pylist()
    except snapshots.SnapshotError as e:
        raise EvalError(str(e)) from None
    if max_examples is not None:
        rows = rows[: int(max_examples)]
    out = []
    for i, r in enumerate(rows):
        extras = {k: r.get(k) for k in EXTRAS}
        if extras["interaction_id"] is None:
            extras["interaction_id"] = f"{kind}-{i}"
        if kind == "sft":
            msgs = _messages(r.get("messages"), file, i, "messages")
            if msgs[-1]["role"] != "assistant":
                raise EvalError(f"{file} row {i} field 'messages': must end with the assistant turn")
            out.append({"prompt": msgs[:-1], "completion": msgs[-1:], **extras})
        elif kind == "pref":
            out.append({"prompt": _messages(r.get("prompt"), file, i, "prompt"),
                        "chosen": _messages(r.get("chosen"), file, i, "chosen", n=1),
                        "rejected": _messages(r.get("rejected"), file, i, "rejected", n=1), **extras})
        else:
            label = r.get("label")
            if not isinstance(label, bool):
                raise EvalError(f"{file} row {i} field 'label': expected a bool, got {label!r}")
            out.append({"prompt": _messages(r.get("prompt"), file, i, "prompt"),
                        "completion": _messages(r.get("completion"), file, i, "completion", n=1),
                        "label": label, **extras})
    return out


def check_finite(values, what: str, ids: list[str]) -> None:
    """Raise naming the first example whose score is NaN or infinite."""
    for v, i in zip(values, ids, strict=True):
        if not math.isfinite(float(v)):
            raise EvalError(f"{what}: score is {v} for example {i!r} (NaN/inf scores cannot be gated)")
