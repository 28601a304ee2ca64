"""A kind's rows in the contract's columns, assembled in Arrow from one export chunk.

DuckDB hands over each kind's rows narrow (rows of the store and flags) and the chunk's
texts once; here every row takes its texts from them by index and the chat messages are
built as Arrow list arrays: no wide rows are sorted or converted per example.
"""

from __future__ import annotations

from signals.snapshot import COLUMNS, EXTRAS


def assemble(kind: str, rows, idx, txt):
    """One kind's rows as a RecordBatch: `idx` is each row's position in the chunk's texts `txt`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def col(table, name):
        return table.column(name).combine_chunks()

    prompt = txt["prompt"].take(idx)
    own = txt["completion"].take(idx)
    text_a = pc.if_else(col(rows, "a_edit").fill_null(False), txt["edited_text"].take(idx), own)
    extras = [*(txt[c].take(idx) for c in ("interaction_id", "app", "task", "user_id")), col(rows, "origin")]
    if kind == "sft":
        columns = [append_message(prompt, text_a)]
    elif kind == "pref":
        text_b = pc.if_else(col(rows, "b_other").fill_null(False), col(rows, "other_text"), own)
        columns = [prompt, messages(text_a), messages(text_b)]
    else:
        columns = [prompt, messages(text_a), col(rows, "label")]
    return pa.RecordBatch.from_arrays([*columns, *extras], [*COLUMNS[kind], *EXTRAS])


def _assistant(content):
    import pyarrow as pa

    content = content.cast(pa.string())
    return pa.StructArray.from_arrays([pa.repeat("assistant", len(content)).cast(pa.string()), content],
                                      names=["role", "content"])


def messages(content):
    """[{'role': 'assistant', 'content': c}] per row."""
    import numpy as np
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(np.arange(len(content) + 1, dtype=np.int32)), _assistant(content))


def append_message(prompt, content):
    """prompt + [{'role': 'assistant', 'content': c}] per row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(prompt)
    lengths = pc.list_value_length(prompt).to_numpy(zero_copy_only=False).astype(np.int64)
    values = prompt.flatten().cast(pa.struct([("role", pa.string()), ("content", pa.string())]))
    total = len(values)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths + 1)
    order = np.empty(total + n, dtype=np.int64)
    order[np.arange(total) + np.repeat(np.arange(n), lengths)] = np.arange(total)
    order[offsets[1:] - 1] = total + np.arange(n)
    merged = pa.concat_arrays([values, _assistant(content)]).take(pa.array(order))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), merged)
