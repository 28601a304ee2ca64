"""The built-in `smoke` snapshot: a small support-reply data set in the snapshot format.

Used by `+exp=smoke` when `signals.build` (the real builder) is not installed, so a
newcomer's first run needs no store. It writes exactly what the builder writes
(contract 1: `manifest.json` + `{sft,pref,kto}/{train,eval}.parquet`), so train
reads it through the same code path as any snapshot.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kim", "Lea"]
ISSUES = [("my order has not arrived", "your order ships today and arrives within two days"),
          ("I want a refund", "we have started your refund; it reaches your account in five days"),
          ("I cannot log in", "we sent a password reset link to your email"),
          ("the app shows an error", "our team fixed the error; please update the app"),
          ("how do I change my email", "open Settings, then Account, and edit the email field"),
          ("can I cancel my plan", "yes, your plan is cancelled at the end of this month")]


def _msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def smoke_rows(n_train: int = 48, n_eval: int = 12, seed: int = 0) -> dict[str, dict[str, list[dict]]]:
    """Rows per kind and split: the house style greets by name and signs off."""
    rng = random.Random(seed)
    out: dict[str, dict[str, list[dict]]] = {k: {"train": [], "eval": []} for k in ("sft", "pref", "kto")}
    for i in range(n_train + n_eval):
        split = "train" if i < n_train else "eval"
        name, (ask, answer) = rng.choice(NAMES), rng.choice(ISSUES)
        prompt = [_msg("user", f"Hello, this is {name}: {ask}.")]
        good = f"Hi {name}, {answer}. Best regards, the Support Team"
        bad = answer.capitalize() + "."
        extras = {"interaction_id": f"smoke-{i:04d}", "app": "support", "task": "reply",
                  "user_id": f"u{i % 7}"}
        out["sft"][split].append({"messages": prompt + [_msg("assistant", good)], **extras,
                                  "origin": "accept"})
        out["pref"][split].append({"prompt": prompt, "chosen": [_msg("assistant", good)],
                                   "rejected": [_msg("assistant", bad)], **extras, "origin": "edit"})
        out["kto"][split].append({"prompt": prompt, "completion": [_msg("assistant", good)],
                                  "label": True, **extras, "origin": "accept"})
        out["kto"][split].append({"prompt": prompt, "completion": [_msg("assistant", bad)],
                                  "label": False, **extras, "origin": "reject"})
    return out


def _schema(kind: str):
    import pyarrow as pa

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    extras = [("interaction_id", pa.string()), ("app", pa.string()), ("task", pa.string()),
              ("user_id", pa.string()), ("origin", pa.string())]
    cols = {"sft": [("messages", messages)],
            "pref": [("prompt", messages), ("chosen", messages), ("rejected", messages)],
            "kto": [("prompt", messages), ("completion", messages), ("label", pa.bool_())]}[kind]
    return pa.schema(cols + extras)


def write_snapshot(root: str | Path, rows: dict[str, dict[str, list[dict]]], recipe: dict,
                   prefix: str = "builtin") -> Path:
    """Write rows as a contract snapshot under root/<version>/; same rows, same version."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    blob = json.dumps({"recipe": recipe, "rows": rows}, sort_keys=True).encode()
    version = f"{prefix}-{hashlib.sha256(blob).hexdigest()[:12]}"
    path = Path(root) / version
    if (path / "manifest.json").exists():
        return path
    tmp = Path(root) / f".{version}.tmp"
    for kind, splits in rows.items():
        (tmp / kind).mkdir(parents=True, exist_ok=True)
        for split, items in splits.items():
            pq.write_table(pa.Table.from_pylist(items, schema=_schema(kind)), tmp / kind / f"{split}.parquet")
    kto = rows.get("kto", {}).get("train", [])
    pos = sum(r["label"] for r in kto)
    neg = len(kto) - pos
    manifest = {
        "version": version, "recipe": recipe,
        "counts": {k: {s: len(v) for s, v in splits.items()} for k, splits in rows.items()},
        "exclusions": {}, "watermark": {}, "builder_version": "train.builtin/1",
        "created_at": datetime.now(UTC).isoformat(), "redactions": {},
        # TRL's advice: desirable_weight * n_pos / (undesirable_weight * n_neg) in [1, 4/3]
        "kto_weights": {"desirable_weight": 1.0,
                        "undesirable_weight": round(pos / neg, 4) if neg and pos else 1.0},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if path.exists():            # another process finished the same snapshot first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(path)
    return path


def write_smoke_snapshot(root: str | Path, recipe: dict | None = None) -> Path:
    """The smoke snapshot under root; idempotent."""
    return write_snapshot(root, smoke_rows(), recipe or {"name": "smoke", "builtin": True},
                          prefix="smoke")
