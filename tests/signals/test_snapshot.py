"""Snapshots: the contract's files and manifest, determinism, reuse, revocation, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from signals import build as build_mod
from signals.build import (
    SnapshotRevoked,
    build_snapshot,
    is_revoked,
    list_snapshots,
    load_snapshot,
    revoke_snapshots,
)
from signals.store import open_store
from tests.conftest import ROOT
from tests.signals.store_helpers import TinyStore

MSG = pa.list_(pa.field("element", pa.struct([("role", pa.string()), ("content", pa.string())])))
EXTRAS = [("interaction_id", pa.string()), ("app", pa.string()), ("task", pa.string()),
          ("user_id", pa.string()), ("origin", pa.string())]
SCHEMAS = {
    "sft": pa.schema([("messages", MSG), *EXTRAS]),
    "pref": pa.schema([("prompt", MSG), ("chosen", MSG), ("rejected", MSG), *EXTRAS]),
    "kto": pa.schema([("prompt", MSG), ("completion", MSG), ("label", pa.bool_()), *EXTRAS]),
}
RECIPE = {"name": "snap", "split": {"eval_fraction": 0.3}}


def fill(store: TinyStore, users=("alice", "bob", "carol")) -> None:
    for n, u in enumerate(users):
        for i in range(8):
            store.shown(f"{u} asks question {i}", f"answer {i} for {u}", "accept", user=u)
            store.shown(f"{u} asks other {i}", f"weak answer {i}", "edit", user=u,
                        edited_text=f"a much stronger answer number {i} for {u}")
        a = store.interaction(f"pick for {u}", "left option", user=u)
        b = store.interaction(f"pick for {u}", "right option", user=u)
        store.feedback(a if n % 2 else b, "choose", other=b if n % 2 else a)
        store.shown(f"{u} asks bad {n}", "a wrong answer", "reject", user=u)


@pytest.fixture
def store_path(tmp_path):
    s = TinyStore(tmp_path / "s.duckdb")
    fill(s)
    s.close()
    return s.path


def test_files_schemas_and_manifest_follow_the_contract(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    assert snap.path == tmp_path / "snaps" / snap.version and snap.version.startswith("snap-")
    for kind, schema in SCHEMAS.items():
        for split in ("train", "eval"):
            got = pq.read_schema(snap.file(kind, split))
            assert got.remove_metadata().equals(schema), (kind, split, got)
    m = json.loads((snap.path / "manifest.json").read_text())
    assert m == snap.manifest
    for key in ("version", "recipe", "counts", "exclusions", "watermark", "builder_version", "created_at",
                "redactions", "kto_weights"):
        assert key in m, key
    assert m["recipe"]["split"]["eval_fraction"] == 0.3 and m["recipe"]["pref"]["min_edit_distance"] == 0.02
    for kind in SCHEMAS:
        for split in ("train", "eval"):
            assert pq.read_metadata(snap.file(kind, split)).num_rows == m["counts"][kind][split]
    assert sum(m["counts"]["sft"].values()) == 48 and sum(m["counts"]["pref"].values()) == 27
    assert m["counts"]["kto"]["eval"] > 0
    assert m["watermark"]["interactions"] == 3 * 19 and m["watermark"]["feedback"] == 3 * 18
    assert set(m["kto_weights"]) == {"desirable_weight", "undesirable_weight"}


def test_an_empty_store_gives_empty_files_with_the_right_schema(tmp_path):
    TinyStore(tmp_path / "e.duckdb").close()
    snap = build_snapshot({"name": "empty"}, str(tmp_path / "e.duckdb"), tmp_path / "snaps")
    for kind, schema in SCHEMAS.items():
        for split in ("train", "eval"):
            t = pq.read_table(snap.file(kind, split))
            assert t.num_rows == 0 and t.schema.remove_metadata().equals(schema)


def test_same_store_and_recipe_give_the_same_bytes_and_version(store_path, tmp_path):
    a = build_snapshot(RECIPE, store_path, tmp_path / "a")
    b = build_snapshot(RECIPE, store_path, tmp_path / "b")
    assert a.version == b.version
    for name in a.manifest["files"]:
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    again = build_snapshot(RECIPE, store_path, tmp_path / "a")        # reused, not rewritten
    assert again.version == a.version and again.manifest["created_at"] == a.manifest["created_at"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == [a.version]   # no leftovers
    assert len(list_snapshots(store_path)) == 1
    other = build_snapshot({**RECIPE, "split": {"eval_fraction": 0.5}}, store_path, tmp_path / "a")
    assert other.version != a.version
    s = TinyStore(store_path)
    s.shown("a new prompt", "a new answer", "accept", user="dan")
    s.close()
    assert build_snapshot(RECIPE, store_path, tmp_path / "a").version not in (a.version, other.version)


def test_bytes_do_not_depend_on_how_the_export_is_chunked(store_path, tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "ROW_GROUP", 7)        # several row groups, cut across chunks
    whole = build_snapshot(RECIPE, store_path, tmp_path / "whole")
    monkeypatch.setattr(build_mod, "EXPORT_CHUNK", 5)      # a chunk every few interactions
    monkeypatch.setattr(build_mod, "CHUNK_BLOCK", 1)
    chunks = []

    def recorded(con, real=build_mod._chunks):
        chunks.extend(real(con))
        return chunks

    monkeypatch.setattr(build_mod, "_chunks", recorded)
    chunked = build_snapshot(RECIPE, store_path, tmp_path / "chunked")
    assert len(chunks) > 3
    assert chunked.version == whole.version
    assert pq.ParquetFile(chunked.file("kto", "train")).metadata.num_row_groups > 2


def test_a_bad_memory_limit_is_named(store_path, tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "MEMORY_LIMIT", "1GB'; DROP TABLE interactions; --")
    with pytest.raises(ValueError, match="SIGNALS_BUILD_MEMORY"):
        build_snapshot(RECIPE, store_path, tmp_path / "s")
    assert open_store(store_path).execute("SELECT count(*) FROM interactions").fetchone()[0] > 0


def test_a_failed_build_leaves_nothing_behind(store_path, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_mod, "_version", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    assert list((tmp_path / "snaps").iterdir()) == []
    assert list_snapshots(store_path) == []


def test_members_list_every_interaction_in_the_snapshot(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    con = open_store(store_path, read_only=True)
    members = dict(con.execute("SELECT interaction_id, user_id FROM snapshot_members WHERE version = ?",
                               [snap.version]).fetchall())
    con.close()
    seen = set()
    for kind in SCHEMAS:
        for split in ("train", "eval"):
            seen |= set(pq.read_table(snap.file(kind, split), columns=["interaction_id"])["interaction_id"].to_pylist())
    assert seen <= set(members)
    assert len(members) == 3 * 19          # every interaction, the not-chosen side of a choice too
    assert set(members.values()) == {"alice", "bob", "carol"}


def test_forget_revokes_every_snapshot_that_held_the_user(store_path, tmp_path):
    from signals.privacy import forget

    root = tmp_path / "snaps"
    with_bob = build_snapshot(RECIPE, store_path, root)
    only_alice = build_snapshot({**RECIPE, "name": "alice", "filters": {"users": ["alice"]}}, store_path, root)
    con = open_store(store_path)
    report = forget(con, ["bob"])
    con.close()
    assert report["snapshots"] == [with_bob.version] and report["revoked"]
    assert is_revoked(store_path, with_bob.version) and not is_revoked(store_path, only_alice.version)
    with pytest.raises(SnapshotRevoked, match="forget"):
        load_snapshot(root, with_bob.version)
    assert not (with_bob.path / "sft").exists()                # the data files are gone
    assert (with_bob.path / "manifest.json").exists()          # the record of what was withdrawn stays
    assert load_snapshot(root, only_alice.version).version == only_alice.version
    rebuilt = build_snapshot(RECIPE, store_path, root)
    assert rebuilt.version != with_bob.version
    users = set()
    for split in ("train", "eval"):
        users |= set(pq.read_table(rebuilt.file("sft", split))["user_id"].to_pylist())
    assert users == {"alice", "carol"}
    listed = {r["version"]: r for r in list_snapshots(store_path)}
    assert listed[with_bob.version]["revoked_reason"].startswith("forget")


def test_revoke_without_purge_keeps_files_but_refuses_to_load(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    con = open_store(store_path)
    assert revoke_snapshots(con, [snap.version, "unknown-v"], "bad labels", purge=False) == [snap.version]
    assert revoke_snapshots(con, [snap.version], "again") == []       # already revoked
    con.close()
    with pytest.raises(SnapshotRevoked, match="bad labels"):
        load_snapshot(tmp_path / "snaps", snap.version)
    with pytest.raises(SnapshotRevoked, match="revoked"):             # an identical rebuild is refused
        build_snapshot(RECIPE, store_path, tmp_path / "snaps")


def test_load_snapshot_reads_back_and_names_a_missing_one(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    loaded = load_snapshot(tmp_path / "snaps", snap.version)
    assert loaded.manifest == snap.manifest and loaded.data_files("pref")["eval"].endswith("pref/eval.parquet")
    with pytest.raises(FileNotFoundError, match="nope"):
        load_snapshot(tmp_path / "snaps", "nope")


def test_cli_build_and_snapshots_show(store_path, tmp_path):
    from signals.__main__ import main

    root = tmp_path / "snaps"
    out = subprocess.run([sys.executable, "-m", "signals", "build", "data=smoke", f"snapshot_root={root}",
                          "split.eval_fraction=0.3", "--db", store_path],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    version = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("snapshot "))
    assert "kind" in out.stdout and "sft" in out.stdout and "excluded" in out.stdout
    assert "desirable_weight=" in out.stdout
    assert (root / version / "manifest.json").exists()
    res = subprocess.run([sys.executable, "-m", "signals", "snapshots", "show", version, "--json", "--db", store_path],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["version"] == version and shown["recipe"]["name"] == "smoke"
    assert shown["recipe"]["split"]["eval_fraction"] == 0.3 and shown["recipe"]["caps"]["per_user"] == 50
    assert main(["snapshots", "--db", store_path]) == 0
    assert main(["snapshots", "show", "missing", "--db", store_path]) == 2
    assert main(["build", "data=smoke", "caps.per_usr=3", "--db", store_path]) != 0


def test_a_missing_store_is_an_error_not_an_empty_snapshot(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_snapshot(RECIPE, str(tmp_path / "nope.duckdb"), tmp_path / "snaps")
    assert not (tmp_path / "nope.duckdb").exists()
