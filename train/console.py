"""What the console shows during a run: what a person can act on, and one progress bar per stage.

`configure(quiet)` is called by every entry point before the heavy libraries load, and
again in each worker (launchers pass `SIGNALS_QUIET` down). It keeps the trainer's
progress bar (quiet: none), drops the per-dataset `map` bars and the weight-loading bar,
selects DeepSpeed's CPU accelerator explicitly on a machine without CUDA (instead of its
warning), and filters library deprecation warnings that only the libraries can fix. A
warning about the user's own settings (an unknown field, a bad value) is never filtered.
"""

from __future__ import annotations

import os
import warnings

# Library-internal deprecations (TRL calling transformers' old names): nothing to act on.
LIBRARY_WARNINGS = (
    r".*is_gradient_checkpointing.* is deprecated",
    r"`gradient_checkpointing` is deprecated",
    r".*torch_dtype.* is deprecated",
)


def quiet() -> bool:
    return os.environ.get("SIGNALS_QUIET") == "1"


def configure(quiet_mode: bool | None = None) -> None:
    """Set up the console for this process (and, through the environment, its workers)."""
    if quiet_mode is not None:
        os.environ["SIGNALS_QUIET"] = "1" if quiet_mode else "0"
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")       # ORPO lives in trl.experimental
    for pattern in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
    if "DS_ACCELERATOR" not in os.environ:
        import torch

        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"     # said once by us, not warned by DeepSpeed
    try:
        import datasets

        datasets.disable_progress_bars()             # one bar per stage: the trainer's
    except ImportError:  # pragma: no cover
        pass
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if quiet():
        os.environ["TQDM_DISABLE"] = "1"
