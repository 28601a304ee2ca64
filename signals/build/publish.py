"""A built snapshot's identity and publication: its version, its folder under the root,
and the store's catalog (`snapshots`, `snapshot_members`) that revocation works from.

The version is a hash of the files' bytes, the recipe and BUILDER_VERSION, so the same
store and recipe give the same version, and an identical existing snapshot is reused
rather than written again. Files are written in a temporary folder beside the final one
and moved into place in one rename, so a reader never sees half a snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb

from signals import snapshot
from signals.store import transaction

BUILDER_VERSION = "signals.build/3"


# Every user whose text a member interaction's rows hold: its owner, and the author of an
# edit or a choice on it (feedback.user_id), as keyed hashes (signals.keys); one row per
# (interaction, user), a NULL hash for an anonymous owner.
_MEMBERS = """
INSERT INTO snapshot_members (version, interaction_id, user_hash)
WITH m AS (SELECT i.interaction_id, i.user_id FROM interactions i SEMI JOIN build_members u ON u.rid = i.rowid)
SELECT DISTINCT ?, interaction_id, keyed_hash(user_id) FROM (
    SELECT interaction_id, user_id FROM m
    UNION ALL
    SELECT m.interaction_id, f.user_id FROM m JOIN feedback f ON f.interaction_id = m.interaction_id
    WHERE f.kind IN ('edit', 'choose') AND f.user_id IS NOT NULL
    UNION ALL
    SELECT m.interaction_id, f.user_id FROM m JOIN feedback f ON f.other_interaction_id = m.interaction_id
    WHERE f.kind = 'choose' AND f.user_id IS NOT NULL)
"""


def version_of(r: dict, files: dict) -> str:
    """`<recipe name>-<hash>` of the files' bytes, the recipe and the builder version."""
    if r.get("split", {}).get("eval_count", 0) is None:     # added in issue 17: unset, versions stay as they were
        r = {**r, "split": {k: v for k, v in r["split"].items() if k != "eval_count"}}
    blob = json.dumps({"recipe": r, "builder": BUILDER_VERSION,
                       "files": {k: v["sha256"] for k, v in sorted(files.items())}},
                      sort_keys=True, default=str)
    return f"{r['name']}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def publish(con: duckdb.DuckDBPyConnection, root: Path, tmp: Path, manifest: dict) -> snapshot.Snapshot:
    """Move the files in `tmp` into root/version (or reuse an identical one) and record the
    snapshot and its members (build_members) in the store. An identical snapshot that
    was revoked is refused: it would hold the same withdrawn data."""
    from signals import keys

    version = manifest["version"]
    final = (root / version).resolve()          # absolute: forget finds it from any folder
    row = con.execute("SELECT revoked_at, revoked_reason FROM snapshots WHERE version = ?", [version]).fetchone()
    if row and row[0] is not None:
        raise snapshot.SnapshotRevoked(f"snapshot {version} (identical to this build) was revoked on {row[0]} "
                                       f"({row[1]}); change the recipe or the data to build a new one")
    if (final / snapshot.MANIFEST).exists():
        snap = snapshot.open(final)
    else:
        (tmp / snapshot.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        if final.exists():          # a half-written directory from a crash: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        snap = snapshot.Snapshot(version, final, manifest)
    if row is None:
        keys.install(con)
        with transaction(con):
            con.execute("INSERT INTO snapshots (version, recipe_name, path, manifest, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [version, manifest["recipe"]["name"], str(final),
                         json.dumps(snap.manifest, default=str), snap.manifest["created_at"]])
            con.execute(_MEMBERS, [version])
    return snap
