"""Evaluation harness, promotion gate and model registry (`python -m eval`).

Imports stay light here: torch and transformers load only inside the functions
that score or generate, so `python -m eval registry` starts fast.
"""


class EvalError(ValueError):
    """Bad input to an evaluation (missing run, empty split, NaN score, unloadable model).

    The message names the file, row and field where there is one. An evaluation that
    raises it is recorded as `inconclusive`, never `promote`.
    """
