"""A finished run's model (or adapter) and its card, pushed to a hub repository.

    from train.hub import push_run
    push_run("runs/sft_lora_smol/20261128-120000", "my-org/support-sft", token=token)

One commit of the folder a server loads (`model/`, else `adapter/`, with the card
train/card.py wrote there as README.md) through `huggingface_hub.HfApi`: the repository is
created when missing (private unless asked), checkpoints and optimizer states stay out. The
endpoint is huggingface_hub's (HF_ENDPOINT) unless given, so a private hub or a local
stand-in works the same. The token goes to huggingface_hub only: errors are scrubbed of it.
"""

from __future__ import annotations

from pathlib import Path

from train.rundir import read_run

IGNORE = ["checkpoint-*/**", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "training_args.bin", "*.lock"]


class PushError(RuntimeError):
    """The hub refused or could not be reached; the message holds no token."""


def push_run(run_dir: str | Path, repo_id: str, *, token: str, private: bool = True, endpoint: str | None = None,
             revision: str | None = None) -> dict:
    """Push the run's served folder and card to `repo_id`; returns {repo, url, commit, files}."""
    from huggingface_hub import HfApi

    from signals.secrets import scrub

    if not token:
        raise ValueError("pushing needs a Hugging Face token: set HF_TOKEN (or run `hf auth login`)")
    if repo_id.count("/") != 1 or any(not part or part in (".", "..") for part in repo_id.split("/")):
        raise ValueError(f"repository {repo_id!r}: expected ORG/NAME")
    run = read_run(run_dir)
    folder = run.serve_path
    if not (folder / "README.md").is_file():
        raise ValueError(f"{folder}: no README.md (the model card); a run written by `python -m train` has one")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                 ignore_patterns=IGNORE,
                                 commit_message=f"run {run.run_id} ({run.exp_name or 'exp'}, snapshot {run.snapshot_version})")
    except Exception as e:  # HTTP errors, refused connections: said without the token
        raise PushError(scrub(f"push to {repo_id} failed: {type(e).__name__}: {e}", known=[token])) from None
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                   and not any(p.relative_to(folder).match(g) for g in IGNORE))
    return {"repo": repo_id, "url": str(getattr(info, "repo_url", "") or ""), "commit": info.oid, "files": files,
            "run": run.run_id}
