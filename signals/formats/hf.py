"""A snapshot as Hugging Face datasets: one DatasetDict (train, eval) per kind, in TRL's
columns, saved with `save_to_disk` and, when asked and a token is present, pushed to a hub
dataset repository (each kind a config, in push_to_hub's layout). conf/source/trl-*.yaml read
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


def push(snap, repo_id: str, token: str, *, private: bool = True, endpoint: str | None = None) -> list[str]:
    """Push every non-empty kind as config KIND of dataset `repo_id`, in one commit; returns the
    kinds pushed. The layout is push_to_hub's (KIND/SPLIT-00000-of-00001.parquet and a README
    whose `configs:` names them, so `load_dataset(repo_id, KIND)` reads it), written to a temporary
    folder and sent with HfApi.upload_folder, as train/hub.py sends a model: one commit for all
    kinds, and no more of the hub's API than a private hub or a local stand-in has (datasets'
    push_to_hub also reads repo info, lists trees and uploads through LFS). The endpoint is
    huggingface_hub's (HF_ENDPOINT) unless given; the token goes to huggingface_hub only."""
    import tempfile

    import pyarrow.parquet as pq
    from huggingface_hub import HfApi

    from signals.snapshot import COLUMNS, KINDS, SPLITS

    with tempfile.TemporaryDirectory(prefix="signals-push-") as tmp:
        rows: dict[str, dict[str, int]] = {}
        for kind in KINDS:
            for split in SPLITS:
                table = snap.table(kind, split, COLUMNS[kind])
                if table.num_rows:
                    (Path(tmp) / kind).mkdir(exist_ok=True)
                    pq.write_table(table, Path(tmp) / kind / f"{split}-00000-of-00001.parquet")
                    rows.setdefault(kind, {})[split] = table.num_rows
        if not rows:
            return []
        (Path(tmp) / "README.md").write_text(card(snap, repo_id, rows), encoding="utf-8")
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=tmp,
                          commit_message=f"{snap.version}: {', '.join(rows)}")
    return list(rows)


def card(snap, repo_id: str, rows: dict[str, dict[str, int]]) -> str:
    """The dataset card: `configs:` front matter (what load_dataset reads) and what the repository holds."""
    import yaml

    configs = [{"config_name": kind, "data_files": [{"split": s, "path": f"{kind}/{s}-*"} for s in splits]}
               for kind, splits in rows.items()]
    table = "\n".join(f"| {kind} | {s} | {n} |" for kind, splits in rows.items() for s, n in splits.items())
    return (f"---\n{yaml.safe_dump({'configs': configs}, sort_keys=False)}---\n\n# {repo_id}\n\n"
            f"Snapshot `{snap.version}` of a signals store (`python -m signals export --to hf --push`), "
            "in TRL's columns: no user ids, interaction ids or apps.\n\n"
            f"| config | split | rows |\n|---|---|---|\n{table}\n")
