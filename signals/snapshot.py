"""The snapshot contract, in one place: what a snapshot is, how it is read, listed and revoked.

    from signals import snapshot
    snap = snapshot.open("data/snapshots/demo-1a2b3c4d5e6f")                 # a folder
    snap = snapshot.open("demo-1a2b3c4d5e6f", root="data/snapshots",
                         store="data/signal.duckdb")                         # refuses a revoked one
    train = snap.dataset("pref", "train", columns=snapshot.COLUMNS["pref"])  # None when 0 rows

A snapshot is a folder: `manifest.json` (its `version`, recipe, counts, ...) and
`{kind}/{split}.parquet` for every kind and split, with `schema(kind)` (the builder,
signals.build, writes them with it). train/ and eval/ read snapshots only through here.

A snapshot is revoked (e.g. it held data of a user who was then forgotten) in two
places: the store's `snapshots` row and a `REVOKED.json` beside the manifest (the data
files are usually deleted; the manifest stays as the record of what was withdrawn).
`open` refuses it by either, so no run trains or evaluates on it again.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from signals import store as store_mod
from signals.manifest import read_manifest

if TYPE_CHECKING:
    import datasets
    import pyarrow

KINDS = ("sft", "pref", "kto")
SPLITS = ("train", "eval")
# each kind's training columns (TRL's names), then the extras every file carries
COLUMNS = {"sft": ("messages",), "pref": ("prompt", "chosen", "rejected"), "kto": ("prompt", "completion", "label")}
EXTRAS = ("interaction_id", "app", "task", "user_id", "origin")
MANIFEST = "manifest.json"
REVOKED_MARKER = "REVOKED.json"

Store = str | os.PathLike | duckdb.DuckDBPyConnection


class SnapshotError(ValueError):
    """A snapshot that cannot be read as the contract says; the message names the file,
    field or version."""


class SnapshotRevoked(SnapshotError):
    """The snapshot was revoked (e.g. it held a forgotten user's data): never train on it."""


def schema(kind: str) -> pyarrow.Schema:
    """The Parquet schema of a kind's files: chat messages as lists of {role, content},
    every column nullable."""
    import pyarrow as pa

    _check_kind(kind)
    msgs = pa.list_(pa.field("element", pa.struct([("role", pa.string()), ("content", pa.string())])))
    types = {"messages": msgs, "prompt": msgs, "chosen": msgs, "rejected": msgs, "completion": msgs,
             "label": pa.bool_()}
    return pa.schema([(c, types[c]) for c in COLUMNS[kind]] + [(c, pa.string()) for c in EXTRAS])


@dataclass(frozen=True)
class Snapshot:
    """A built snapshot: `path/manifest.json` and `path/{kind}/{split}.parquet`."""

    version: str
    path: Path
    manifest: dict

    def file(self, kind: str, split: str) -> Path:
        _check_kind(kind)
        if split not in SPLITS:
            raise SnapshotError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
        return self.path / kind / f"{split}.parquet"

    def data_files(self, kind: str) -> dict[str, str]:
        """{"train": path, "eval": path}, e.g. for `datasets.load_dataset("parquet", data_files=...)`."""
        return {split: str(self.file(kind, split)) for split in SPLITS}

    def table(self, kind: str, split: str, columns=None) -> pyarrow.Table:
        """One split as an Arrow table (only `columns`, when given)."""
        import pyarrow.parquet as pq

        path = self.file(kind, split)
        if not path.is_file():
            raise SnapshotError(f"snapshot {self.version}: {path} is missing")
        if columns is not None:
            have = pq.read_schema(path).names
            missing = [c for c in columns if c not in have]
            if missing:
                raise SnapshotError(f"snapshot {self.version}: {path} has no column(s) {missing}; "
                                    f"it has {have}")
            columns = list(columns)
        return pq.read_table(path, columns=columns)

    def dataset(self, kind: str, split: str, columns=None) -> datasets.Dataset | None:
        """One split as an in-memory `datasets.Dataset`, or None when it has no rows.

        Read with pyarrow, not `load_dataset`: no datasets cache, so ranks of one run
        never race on a cache folder (and a 0-row file is not an error).
        """
        table = self.table(kind, split, columns)
        if table.num_rows == 0:
            return None
        from datasets import Dataset

        return Dataset(table)


def open(ref: str | os.PathLike, *, root: str | os.PathLike | None = None, store: Store | None = None,
         wait: float = store_mod.DEFAULT_WAIT) -> Snapshot:
    """The snapshot `ref`: a snapshot folder (it has manifest.json) or a version under `root`.

    Raises SnapshotError when there is no manifest, it is not a JSON object or it has no
    'version'; SnapshotRevoked when REVOKED.json is beside the manifest, or when `store`
    (a path or a connection) marks the version revoked. A store path is opened read-only
    (waiting up to `wait` s for a writer) and never created: a store file that does not
    exist revokes nothing.
    """
    path = Path(ref)
    if root is not None and not (path / MANIFEST).is_file():
        path = Path(root) / ref
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        where = f" under {root}" if root is not None else ""
        raise SnapshotError(f"no snapshot {str(ref)!r}{where}: {manifest_file} is missing")
    manifest = read_manifest(manifest_file, SnapshotError)
    version = manifest.get("version")
    if not isinstance(version, str) or not version:
        raise SnapshotError(f"{manifest_file}: field 'version' is missing or not a string")
    marker = path / REVOKED_MARKER
    if marker.exists():
        info = _marker(marker)
        raise SnapshotRevoked(f"snapshot {version} was revoked on {info.get('revoked_at')}: {info.get('reason')} "
                              f"({marker})")
    if store is not None:
        row = _with_store(store, wait, lambda con: _revocation(con, version))
        if row is not None:
            raise SnapshotRevoked(f"snapshot {version} was revoked on {row[0]}: {row[1]} "
                                  f"(in the store {_name(store)})")
    return Snapshot(version, path, manifest)


def is_revoked(store: Store, version: str, *, wait: float = store_mod.DEFAULT_WAIT) -> bool:
    """Whether the store marks `version` revoked (an unknown version, or a store file that
    does not exist, is not revoked)."""
    return _with_store(store, wait, lambda con: _revocation(con, version)) is not None


def list_snapshots(store: Store) -> list[dict]:
    """Every snapshot the store knows, newest first, with its counts and revocation."""
    con = store if isinstance(store, duckdb.DuckDBPyConnection) else store_mod.open_store(store, read_only=True)
    try:
        if not _has_catalog(con):
            return []
        rows = con.execute("""
            SELECT s.version, s.recipe_name, s.path, s.created_at, s.revoked_at, s.revoked_reason, s.manifest,
                   (SELECT count(DISTINCT interaction_id) FROM snapshot_members m WHERE m.version = s.version) AS members
            FROM snapshots s ORDER BY s.created_at DESC, s.version""").fetchall()
    finally:
        if con is not store:
            con.close()
    out = []
    for version, name, path, created, revoked, reason, manifest, members in rows:
        m = json.loads(manifest)
        out.append({"version": version, "recipe": name, "path": path,
                    "created_at": created.isoformat() if created else None,
                    "revoked_at": revoked.isoformat() if revoked else None, "revoked_reason": reason,
                    "counts": m.get("counts"), "interactions": members, "manifest": m})
    return out


def holding_users(con: duckdb.DuckDBPyConnection, user_ids: list[str]) -> list[str]:
    """Versions of every snapshot that held text of any of `user_ids` (revoked or not):
    membership holds keyed hashes (signals.keys), so `con` must be able to install the key."""
    if not _has_catalog(con):
        return []
    from signals import keys

    keys.install(con)
    con.execute("CREATE OR REPLACE TEMP TABLE holding_q AS SELECT u AS user_id, keyed_hash(u) AS h "
                "FROM unnest(?::VARCHAR[]) t(u)", [[str(u) for u in user_ids]])
    con.execute("CREATE OR REPLACE TEMP TABLE holding_i AS SELECT NULL::VARCHAR AS interaction_id WHERE false")
    try:
        return holding(con, "holding_q", "holding_i")
    finally:
        con.execute("DROP TABLE holding_q; DROP TABLE holding_i")


def holding(con: duckdb.DuckDBPyConnection, users_table: str, interactions_table: str) -> list[str]:
    """Versions of every snapshot whose members hold a user of `users_table` (columns user_id,
    h = keyed_hash(user_id)) or an interaction of `interactions_table` (interaction_id)."""
    if not _has_catalog(con):
        return []
    rows = con.execute(f"""
        SELECT DISTINCT version FROM snapshot_members
        WHERE user_hash IN (SELECT h FROM {users_table})
           OR user_id IN (SELECT user_id FROM {users_table})            -- rows not yet keyed
           OR interaction_id IN (SELECT interaction_id FROM {interactions_table})
        ORDER BY version""").fetchall()
    return [v for (v,) in rows]


def revoke(con: duckdb.DuckDBPyConnection, versions: list[str], reason: str, *, purge: bool = True,
           touched: list | None = None) -> list[str]:
    """Mark `versions` revoked in the store and on disk; with `purge`, delete their Parquet files.

    Returns the versions newly revoked (unknown ones are skipped). The manifest stays,
    with a REVOKED.json beside it, as the record of what was withdrawn and why; `open`
    refuses it and `is_revoked` says so, so no run uses it again. Safe to repeat: a
    version already revoked in the store still gets its marker and purge on disk.

    The folder is the catalog's path (absolute since publish resolves it); an old
    relative path is found with `locate`, whatever the current folder. `touched`, when
    given, gets {"version", "path", "purged"} for each version (path None: not found).
    """
    now = datetime.now(UTC)
    newly = []
    for version in versions:
        row = con.execute("SELECT path, revoked_at FROM snapshots WHERE version = ?", [version]).fetchone()
        if row is None:
            continue
        path, revoked_at = locate(con, version, row[0]), row[1]
        if revoked_at is None:
            con.execute("UPDATE snapshots SET revoked_at = ?, revoked_reason = ? WHERE version = ?",
                        [now, reason, version])
            newly.append(version)
        if touched is not None:
            touched.append({"version": version, "path": str(path) if path else None,
                            "purged": bool(path and purge)})
        if path is not None and path.is_dir():
            marker = path / REVOKED_MARKER
            if not marker.exists():
                marker.write_text(json.dumps({"version": version, "revoked_at": now.isoformat(),
                                              "reason": reason}, indent=2) + "\n")
            if purge:
                for kind in KINDS:
                    shutil.rmtree(path / kind, ignore_errors=True)
    return newly


def locate(con: duckdb.DuckDBPyConnection, version: str, recorded: str) -> Path | None:
    """The folder of snapshot `version` recorded as `recorded` in the catalog: as is when
    absolute; a relative one (written before paths were resolved) against the current
    folder, the store's folder and each folder above it, the first that has this
    version's manifest. None when no candidate does."""
    p = Path(recorded)
    if p.is_absolute():
        return p
    from signals.keys import store_path

    bases = [Path.cwd()]
    sp = store_path(con)
    if sp is not None:
        bases += [sp.parent, *sp.parent.parents]
    for base in bases:
        cand = (base / p).resolve()
        try:
            if read_manifest(cand / MANIFEST, SnapshotError).get("version") == version:
                return cand
        except (SnapshotError, OSError):
            continue
    return None


# ----------------------------------------------------------------------------- helpers


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise SnapshotError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")


def _marker(path: Path) -> dict:
    """REVOKED.json's fields; a marker that cannot be read still revokes."""
    try:
        with builtins.open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        info = None
    return info if isinstance(info, dict) else {"reason": f"{path.name} is unreadable"}


def _with_store(store: Store, wait: float, read):
    """`read(con)` on the store, opened read-only when given as a path; None when the
    store file does not exist (nothing there to say)."""
    if isinstance(store, duckdb.DuckDBPyConnection):
        return read(store)
    if not Path(store).is_file():
        return None
    with store_mod.store(store, read_only=True, wait=wait) as con:
        return read(con)


def _revocation(con: duckdb.DuckDBPyConnection, version: str) -> tuple | None:
    """(revoked_at, reason) when the store marks `version` revoked, else None."""
    if not _has_catalog(con):
        return None
    row = con.execute("SELECT revoked_at, revoked_reason FROM snapshots WHERE version = ?", [version]).fetchone()
    return row if row and row[0] is not None else None


def _has_catalog(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'snapshots' "
                            "AND NOT temporary").fetchone()[0])


def _name(store: Store) -> str:
    return "given as a connection" if isinstance(store, duckdb.DuckDBPyConnection) else str(store)
