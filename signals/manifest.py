"""Read a manifest.json (snapshot or run) with an error that names the file.

Shared by the readers in `train/` and `eval/`, which raise their own error types.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_manifest(path: str | Path, error: type[Exception] = ValueError) -> dict:
    """The JSON object in `path`; `error` names the file when it is not valid JSON or no object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path}: invalid JSON ({e})") from e
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data
