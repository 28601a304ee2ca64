"""A snapshot as Hugging Face datasets: one DatasetDict (train, eval) per kind, in TRL's
columns, saved with `save_to_disk` and, when asked and a token is present, pushed with
`push_to_hub` (each kind a config of one dataset repository). conf/source/trl-*.yaml read
the saved folders back."""

from __future__ import annotations

from pathlib import Path


def dataset_dict(snap, kind: str):
    from datasets import Dataset, DatasetDict

    from signals.snapshot import COLUMNS, SPLITS

    return DatasetDict({split: Dataset(snap.table(kind, split, COLUMNS[kind])) for split in SPLITS})


def save(snap, out: Path) -> dict:
    """out/{sft,pref,kto}/ as save_to_disk folders; returns {kind/split: rows}."""
    from signals.snapshot import KINDS

    files = {}
    for kind in KINDS:
        dd = dataset_dict(snap, kind)
        dd.save_to_disk(str(out / kind))
        files.update({f"{kind}/{split}": ds.num_rows for split, ds in dd.items()})
    return files


def push(snap, repo_id: str, token: str, *, private: bool = True) -> list[str]:
    """Push every non-empty kind as config KIND of dataset `repo_id`; returns the kinds pushed.
    The token goes to huggingface_hub only (never printed or stored)."""
    from signals.snapshot import KINDS

    pushed = []
    for kind in KINDS:
        dd = dataset_dict(snap, kind)
        dd = type(dd)({s: ds for s, ds in dd.items() if ds.num_rows})
        if not dd:
            continue
        dd.push_to_hub(repo_id, config_name=kind, token=token, private=private,
                       commit_message=f"{snap.version} {kind}")
        pushed.append(kind)
    return pushed
