"""Snapshots out to the formats other tools train from; the way back in is a source mapping.

    python -m signals export data/snapshots/demo-ab12 --to openai-sft --out out/oai
    python -m signals export demo-ab12 --to hf --out out/hf [--push ORG/NAME]

| --to          | writes                                         | read back with         |
|---------------|------------------------------------------------|------------------------|
| openai-sft    | sft/{train,eval}.jsonl: {"messages": [...]}     | --source openai-sft    |
| openai-pref   | pref/{train,eval}.jsonl: {input, preferred_output, non_preferred_output} | --source openai-pref |
| hf            | {sft,pref,kto}/ DatasetDict.save_to_disk (train, eval), TRL columns only | --source trl-sft / trl-pref / trl-kto |

Only the TRL columns leave: no user ids, interaction ids or apps (a file sent to another
platform, or a hub, is not the place for them). A revoked snapshot is refused
(signals.snapshot.open). The format table is docs/formats.md.
"""

from __future__ import annotations

from pathlib import Path

from signals import snapshot as snap_mod

FORMATS = ("openai-sft", "openai-pref", "hf")


def export(snap: snap_mod.Snapshot, to: str, out: Path) -> dict:
    """Write `snap` as `to` under `out` (a new or empty folder); returns {file: rows}."""
    if to not in FORMATS:
        raise ValueError(f"--to {to!r}: one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder: give a new --out")
    out.mkdir(parents=True, exist_ok=True)
    if to == "hf":
        from signals.formats.hf import save

        return save(snap, out)
    from signals.formats.openai import write

    return write(snap, "sft" if to == "openai-sft" else "pref", out)
