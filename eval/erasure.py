"""Erasure in eval's own copies: per-example results, and the model that served on revoked data.

`signals forget` erases the store, its file and the snapshots (signals/erasure.py); it
cannot reach up into eval. Its entry point then calls, in this order:

    purge_examples(con)          # per-example Parquet files: rows about a forgotten user's text
    leave_tainted(con, ...)      # `production` off every run trained on a revoked snapshot

A per-example row is about a forgotten user when its interaction is one of theirs
(`forgotten_interactions`), or when the evaluated snapshot lists the interaction with a
tombstoned member (the owner, or the author of an edit or a choice on it:
`snapshot_members.user_hash`). Both are keyed hashes (signals/keys.py), so the store's
key must be at hand. The dashboard is rebuilt from these files, so a rebuild after
`forget` shows none of those rows. What cannot be undone: weights already copied out
of the run directory (a pushed model, a served copy) keep what they learned.
"""

from __future__ import annotations

from pathlib import Path

from eval.registry import PRODUCTION, alias_target, rollback, tainted

_FORGOTTEN = """
    SELECT m.interaction_id FROM snapshot_members m JOIN tombstones t ON m.user_hash = t.user_hash
    WHERE m.version = ?
"""


def _doomed(con, version: str | None) -> set[str]:
    """Interaction ids whose rows in an evaluation of `version` hold a forgotten user's text."""
    ids = {r[0] for r in con.execute(_FORGOTTEN, [version]).fetchall()} if version else set()
    return ids


def purge_examples(con, *, dry_run: bool = False) -> dict:
    """Rewrite every per-example Parquet file of every recorded evaluation without the rows
    about forgotten users; returns {"files", "rows"} rewritten and removed (with `dry_run`,
    what would be, and "found": the files)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from signals import keys

    keys.install(con)
    files = rows = 0
    found = []
    for examples_dir, version in con.execute(
            "SELECT DISTINCT examples_dir, snapshot_version FROM decisions WHERE examples_dir IS NOT NULL").fetchall():
        folder = Path(examples_dir)
        if not folder.is_dir():
            continue
        doomed = _doomed(con, version)
        for f in sorted(folder.glob("*.parquet")):
            table = pq.read_table(f)
            if "interaction_id" not in table.column_names or table.num_rows == 0:
                continue
            ids = table.column("interaction_id").to_pylist()
            hashed = {r[0] for r in con.execute(
                "SELECT i FROM unnest(?::VARCHAR[]) AS u(i) WHERE keyed_hash(i) IN "
                "(SELECT interaction_hash FROM forgotten_interactions)", [[i for i in ids if i]]).fetchall()}
            gone = (doomed | hashed) & set(ids)
            if not gone:
                continue
            if dry_run:
                found.append(f"{f}: {len(gone)} interaction(s) of forgotten users")
                files += 1
                rows += sum(i in gone for i in ids)
                continue
            keep = pc.invert(pc.is_in(table.column("interaction_id"), value_set=_array(gone)))
            kept = table.filter(keep)
            tmp = f.with_suffix(".parquet.tmp")
            pq.write_table(kept, tmp)
            tmp.replace(f)
            files += 1
            rows += table.num_rows - kept.num_rows
    return {"files": files, "rows": rows, "found": found}


def _array(values: set[str]):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def leave_tainted(con, *, alias: str = PRODUCTION, pointer_dir: str | None) -> list[str]:
    """Roll `alias` back until it points at a run whose snapshot is not revoked (or at
    nothing: the off-the-shelf base model); the pointer file is rewritten. Returns the runs
    moved off."""
    moved = []
    target = alias_target(con, alias)
    while target is not None:
        bad, why = tainted(con, target)
        if not bad:
            break
        moved.append(target)
        target = rollback(con, alias=alias, pointer_dir=pointer_dir,
                          reason=f"trained on revoked data ({why}): rolled back by signals forget")
    return moved
