"""Train sees data only as a snapshot: `manifest.json` + Parquet files (contract 1).

The build stage (parent process) resolves which snapshot a run uses: an explicit
`snapshot=` (a version under `snapshot_root`, or a folder), else `signals.build.
build_snapshot(recipe, store, root)` when the builder is installed, else the
built-in smoke snapshot for `data=smoke`. A missing store with `seed_store`
set (the smoke exp) is first filled by the product simulator through real ingest. The choice is frozen into the run config
(`resolved.snapshot`), so a resumed run and every rank read the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from signals.manifest import read_manifest

KINDS = ("sft", "pref", "kto")


@dataclass
class SnapshotRef:
    version: str
    path: str
    manifest: dict


def _read(path: Path) -> SnapshotRef:
    manifest_file = path / "manifest.json"
    if not manifest_file.exists():
        raise FileNotFoundError(f"{path}: not a snapshot (no manifest.json)")
    manifest = read_manifest(manifest_file)
    if "version" not in manifest:
        raise ValueError(f"{manifest_file}: field 'version' is missing")
    return SnapshotRef(str(manifest["version"]), str(path), manifest)


def _builder():
    """signals.build, or None while the builder is not installed."""
    try:
        from signals import build
    except ImportError:
        return None
    return build if hasattr(build, "build_snapshot") else None


def resolve(cfg: DictConfig) -> SnapshotRef:
    """Find or build the snapshot this run trains on (parent process only)."""
    builder = _builder()
    if cfg.get("snapshot"):
        given = Path(str(cfg.snapshot))
        ref = _read(given if (given / "manifest.json").exists() else Path(cfg.snapshot_root) / given)
    elif builder is not None:
        if cfg.get("seed_store") and not Path(str(cfg.store)).exists():
            seed_store(cfg)
        recipe = OmegaConf.to_container(cfg.data, resolve=True)
        snap = builder.build_snapshot(recipe, str(cfg.store), root=str(cfg.snapshot_root))
        ref = SnapshotRef(str(snap.version), str(snap.path), dict(snap.manifest))
    elif cfg.data.get("name") == "smoke":
        from train.builtin import write_smoke_snapshot

        print("train: signals.build is not installed; writing the built-in smoke snapshot")
        ref = _read(write_smoke_snapshot(cfg.snapshot_root,
                                         OmegaConf.to_container(cfg.data, resolve=True)))
    else:
        raise RuntimeError(f"data={cfg.data.get('name')}: signals.build is not installed, so no "
                           "snapshot can be built; pass snapshot=VERSION_OR_PATH")
    check_not_revoked(cfg, ref)
    return ref


def seed_store(cfg: DictConfig) -> None:
    """Fill a missing store through the real ingest: with the seeded product simulator
    (`seed_store.simulate`, the smoke exp) and/or files (`seed_store.ingest`, the real-data
    exps), so one `python -m train +exp=NAME` runs the whole pipeline from raw logs."""
    from signals.ingest import ingest_paths

    seed = cfg.seed_store
    Path(str(cfg.store)).parent.mkdir(parents=True, exist_ok=True)
    if seed.get("simulate"):
        from scripts.simulate import simulate

        spec = OmegaConf.to_container(seed.simulate, resolve=True)
        landing = Path(str(cfg.store)).parent / "landing"
        print(f"train: seeding {cfg.store} with simulated logs ({spec})")
        simulate(landing, **spec)
        ingest_paths([str(landing)], db=str(cfg.store), progress=False)
    if seed.get("ingest"):
        paths = [str(p) for p in seed.ingest.paths]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"seed_store.ingest.paths: {missing} not found")
        print(f"train: seeding {cfg.store} from {paths} (source {seed.ingest.get('source')})")
        ingest_paths(paths, db=str(cfg.store), source=seed.ingest.get("source"), progress=False)


def check_not_revoked(cfg: DictConfig, ref: SnapshotRef) -> None:
    """Refuse a snapshot revoked in the store (e.g. after a deletion request)."""
    builder = _builder()
    if builder is None or not hasattr(builder, "is_revoked") or not Path(str(cfg.store)).exists():
        return
    if builder.is_revoked(str(cfg.store), ref.version):
        raise RuntimeError(f"snapshot {ref.version} is revoked in {cfg.store}; build a new one")


def from_config(cfg: DictConfig) -> SnapshotRef:
    """The snapshot frozen into the run config (workers)."""
    snap = (cfg.get("resolved") or {}).get("snapshot")
    if not snap:
        raise RuntimeError("the run config has no resolved snapshot: run with the build stage, "
                           "or pass snapshot=VERSION_OR_PATH")
    return _read(Path(snap["path"]))


def load_split(ref: SnapshotRef, kind: str, split: str, columns: tuple[str, ...]):
    """One Parquet split as an in-memory datasets.Dataset of only the TRL columns.

    Read with pyarrow (no datasets cache), so concurrent ranks never race on a cache dir.
    Returns None for a split with no rows.
    """
    import pyarrow.parquet as pq
    from datasets import Dataset

    path = Path(ref.path) / kind / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"snapshot {ref.version}: {path} is missing")
    have = set(pq.read_schema(path).names)
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {sorted(have)}")
    table = pq.read_table(path, columns=list(columns))
    if table.num_rows == 0:
        return None
    return Dataset(table)
