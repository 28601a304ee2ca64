"""Snapshots: the contract's files and manifest (signals.snapshot), determinism, reuse,
revocation, the build's settings, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from signals import snapshot
from signals.build import BuildSettings, build_snapshot
from signals.build import export as export_mod
from signals.build import parquet as parquet_mod
from signals.build import publish as publish_mod
from signals.snapshot import SnapshotError, SnapshotRevoked, is_revoked, list_snapshots
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


@pytest.fixture
def recorded_chunks(monkeypatch):
    """The export's chunks, as the build cuts them."""
    chunks = []

    def recorded(con, chunk_rows, real=export_mod.chunks):
        got = real(con, chunk_rows)
        chunks.extend(got)
        return got

    monkeypatch.setattr(export_mod, "chunks", recorded)
    return chunks


def test_bytes_do_not_depend_on_how_the_export_is_chunked(store_path, tmp_path, monkeypatch, recorded_chunks):
    monkeypatch.setattr(parquet_mod, "ROW_GROUP", 7)       # several row groups, cut across chunks
    whole = build_snapshot(RECIPE, store_path, tmp_path / "whole", settings=BuildSettings())
    assert len(recorded_chunks) == 1
    monkeypatch.setattr(export_mod, "CHUNK_BLOCK", 1)
    recorded_chunks.clear()
    # a chunk every few interactions
    chunked = build_snapshot(RECIPE, store_path, tmp_path / "chunked", settings=BuildSettings(export_chunk=5))
    assert len(recorded_chunks) > 3
    assert chunked.version == whole.version
    assert pq.ParquetFile(chunked.file("kto", "train")).metadata.num_row_groups > 2


def test_settings_are_read_when_a_build_starts_not_at_import(store_path, tmp_path, monkeypatch, recorded_chunks):
    monkeypatch.setattr(export_mod, "CHUNK_BLOCK", 1)
    monkeypatch.setenv("SIGNALS_BUILD_CHUNK", "5")          # set after signals.build was imported
    env = build_snapshot(RECIPE, store_path, tmp_path / "env")
    assert len(recorded_chunks) > 3
    recorded_chunks.clear()
    given = build_snapshot(RECIPE, store_path, tmp_path / "given", settings=BuildSettings())   # settings win
    assert len(recorded_chunks) == 1 and given.version == env.version
    monkeypatch.setenv("SIGNALS_BUILD_THREADS", "1")
    monkeypatch.setenv("SIGNALS_BUILD_MEMORY", "300MiB")
    assert BuildSettings.from_env() == BuildSettings(memory_limit="300MiB", threads=1, export_chunk=5)
    con = open_store(store_path)
    build_snapshot(RECIPE, con, tmp_path / "given")
    assert con.execute("SELECT current_setting('threads'), current_setting('memory_limit')").fetchone() == (
        1, "300.0 MiB")
    assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0]
    con.close()


def test_importing_the_builder_reads_no_setting():
    code = """
import os

class Spy(dict):
    read = set()
    def __getitem__(self, k):
        self.read.add(k)
        return dict.__getitem__(self, k)
    def get(self, k, default=None):
        self.read.add(k)
        return dict.get(self, k, default)
    def __contains__(self, k):
        self.read.add(k)
        return dict.__contains__(self, k)

os.environ = Spy(os.environ)
import signals.build, signals.build.export, signals.build.steps, signals.snapshot
print(sorted(k for k in Spy.read if k.startswith("SIGNALS")))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_bad_setting_is_named(store_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNALS_BUILD_MEMORY", "1GB'; DROP TABLE interactions; --")
    with pytest.raises(ValueError, match="SIGNALS_BUILD_MEMORY"):
        build_snapshot(RECIPE, store_path, tmp_path / "s")
    with pytest.raises(ValueError, match="memory_limit"):
        BuildSettings(memory_limit="lots")
    monkeypatch.delenv("SIGNALS_BUILD_MEMORY")
    monkeypatch.setenv("SIGNALS_BUILD_CHUNK", "many")
    with pytest.raises(ValueError, match="SIGNALS_BUILD_CHUNK"):
        build_snapshot(RECIPE, store_path, tmp_path / "s")
    with pytest.raises(ValueError, match="threads"):
        BuildSettings(threads=0)
    assert open_store(store_path).execute("SELECT count(*) FROM interactions").fetchone()[0] > 0


def test_a_failed_build_leaves_nothing_behind(store_path, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish_mod, "version_of", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    assert list((tmp_path / "snaps").iterdir()) == []
    assert list_snapshots(store_path) == []


def test_members_list_every_interaction_in_the_snapshot(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    con = open_store(store_path, read_only=True)
    rows = con.execute("SELECT interaction_id, user_hash FROM snapshot_members WHERE version = ?",
                       [snap.version]).fetchall()
    con.close()
    members = dict(rows)
    seen = set()
    for kind in SCHEMAS:
        for split in ("train", "eval"):
            seen |= set(pq.read_table(snap.file(kind, split), columns=["interaction_id"])["interaction_id"].to_pylist())
    assert seen <= set(members)
    assert len(members) == 3 * 19          # every interaction, the not-chosen side of a choice too
    from signals import keys

    key = bytes.fromhex(open(f"{store_path}.key").read())     # membership holds keyed hashes, never ids
    assert {h for _, h in rows} == {keys.keyed(key, u) for u in ("alice", "bob", "carol")}


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
        snapshot.open(with_bob.version, root=root)
    assert not (with_bob.path / "sft").exists()                # the data files are gone
    assert (with_bob.path / "manifest.json").exists()          # the record of what was withdrawn stays
    assert snapshot.open(only_alice.version, root=root, store=store_path).version == only_alice.version
    rebuilt = build_snapshot(RECIPE, store_path, root)
    assert rebuilt.version != with_bob.version
    users = set()
    for split in ("train", "eval"):
        users |= set(pq.read_table(rebuilt.file("sft", split))["user_id"].to_pylist())
    assert users == {"alice", "carol"}
    listed = {r["version"]: r for r in list_snapshots(store_path)}
    assert listed[with_bob.version]["revoked_reason"].startswith("forget")


def test_revoke_without_purge_keeps_files_but_refuses_to_open(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    con = open_store(store_path)
    assert snapshot.revoke(con, [snap.version, "unknown-v"], "bad labels", purge=False) == [snap.version]
    assert snap.file("sft", "train").exists()
    assert snapshot.revoke(con, [snap.version], "again", purge=False) == []       # already revoked
    con.close()
    assert snap.file("sft", "train").exists()
    with pytest.raises(SnapshotRevoked, match="bad labels"):
        snapshot.open(snap.version, root=tmp_path / "snaps")
    with pytest.raises(SnapshotRevoked, match="revoked"):             # an identical rebuild is refused
        build_snapshot(RECIPE, store_path, tmp_path / "snaps")


def test_open_refuses_a_snapshot_revoked_in_the_store_alone(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    con = open_store(store_path)
    snapshot.revoke(con, [snap.version], "bad labels", purge=False)
    con.close()
    (snap.path / snapshot.REVOKED_MARKER).unlink()          # e.g. a copy of the folder elsewhere
    assert snapshot.open(snap.path).version == snap.version
    with pytest.raises(SnapshotRevoked, match=f"{snap.version}.*bad labels.*{store_path}"):
        snapshot.open(snap.path, store=store_path)
    with open_store(store_path, read_only=True) as con:      # a connection works as well
        with pytest.raises(SnapshotRevoked, match="bad labels"):
            snapshot.open(snap.version, root=tmp_path / "snaps", store=con)


def test_open_refuses_a_snapshot_with_a_revoked_marker_alone(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    (snap.path / snapshot.REVOKED_MARKER).write_text('{"revoked_at": "2026-01-02", "reason": "legal hold"}')
    with pytest.raises(SnapshotRevoked, match="legal hold") as e:
        snapshot.open(snap.path, store=store_path)          # not revoked in the store: the marker is enough
    assert isinstance(e.value, SnapshotError) and isinstance(e.value, ValueError)
    assert not is_revoked(store_path, snap.version)
    (snap.path / snapshot.REVOKED_MARKER).write_text("not json")
    with pytest.raises(SnapshotRevoked, match="unreadable"):
        snapshot.open(snap.path)


def test_open_reads_back_and_names_what_is_wrong(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    for ref, root in ((snap.version, tmp_path / "snaps"), (snap.path, None), (str(snap.path), tmp_path / "x")):
        loaded = snapshot.open(ref, root=root, store=store_path)
        assert loaded == snap and loaded.data_files("pref")["eval"].endswith("pref/eval.parquet")
    with pytest.raises(SnapshotError, match=r"'nope' under .*snaps.*manifest.json is missing"):
        snapshot.open("nope", root=tmp_path / "snaps")
    with pytest.raises(SnapshotError, match="manifest.json is missing"):
        snapshot.open(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text('{"recipe": {}}')
    with pytest.raises(SnapshotError, match=r"bad/manifest.json: field 'version' is missing"):
        snapshot.open(bad)
    (bad / "manifest.json").write_text("{")
    with pytest.raises(SnapshotError, match=r"bad/manifest.json: invalid JSON"):
        snapshot.open(bad)


def test_open_with_a_missing_store_does_not_create_it(store_path, tmp_path):
    snap = build_snapshot(RECIPE, store_path, tmp_path / "snaps")
    missing = tmp_path / "elsewhere" / "none.duckdb"
    assert snapshot.open(snap.path, store=missing).version == snap.version
    assert not is_revoked(missing, snap.version)
    assert not missing.exists() and not missing.parent.exists()


def test_tables_and_datasets_follow_the_contract(store_path, tmp_path):
    snap = build_snapshot({**RECIPE, "split": {"eval_fraction": 0.0}}, store_path, tmp_path / "snaps")
    for kind, want in SCHEMAS.items():
        assert snapshot.schema(kind).equals(want)
        assert list(snapshot.COLUMNS[kind]) + list(snapshot.EXTRAS) == want.names
        assert snap.dataset(kind, "eval") is None                         # 0 rows: None, not an error
        train = snap.dataset(kind, "train", columns=snapshot.COLUMNS[kind])
        assert train.column_names == list(snapshot.COLUMNS[kind])
        assert train.num_rows == snap.manifest["counts"][kind]["train"] > 0
        assert snap.table(kind, "train").schema.remove_metadata().equals(want)
    with pytest.raises(SnapshotError, match=r"sft/train.parquet has no column\(s\) \['chosen'\]"):
        snap.table("sft", "train", columns=["messages", "chosen"])
    with pytest.raises(SnapshotError, match="unknown kind 'dpo'"):
        snap.file("dpo", "train")
    with pytest.raises(SnapshotError, match="unknown split"):
        snap.dataset("sft", "test")
    con = open_store(store_path)
    snapshot.revoke(con, [snap.version], "purged")
    con.close()
    with pytest.raises(SnapshotError, match=r"pref/train.parquet is missing"):
        snap.table("pref", "train")


def test_cli_build_and_snapshots_show(store_path, tmp_path):
    from signals.__main__ import main

    root = tmp_path / "snaps"
    out = subprocess.run([sys.executable, "-m", "signals", "build", "data=smoke", f"snapshot_root={root}",
                          "split.eval_fraction=0.3", "--store", store_path],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    version = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("snapshot "))
    assert "kind" in out.stdout and "sft" in out.stdout and "excluded" in out.stdout
    assert "desirable_weight=" in out.stdout
    assert (root / version / "manifest.json").exists()
    res = subprocess.run([sys.executable, "-m", "signals", "snapshots", "show", version, "--json", "--store", store_path],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["version"] == version and shown["recipe"]["name"] == "smoke"
    assert shown["recipe"]["split"]["eval_fraction"] == 0.3 and shown["recipe"]["caps"]["per_user"] == 50
    assert main(["snapshots", "--store", store_path]) == 0
    assert main(["snapshots", "show", "missing", "--store", store_path]) == 2
    assert main(["build", "data=smoke", "caps.per_usr=3", "--store", store_path]) != 0


def test_a_missing_store_is_an_error_not_an_empty_snapshot(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_snapshot(RECIPE, str(tmp_path / "nope.duckdb"), tmp_path / "snaps")
    assert not (tmp_path / "nope.duckdb").exists()
