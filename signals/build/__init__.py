"""Build versioned SFT, preference and KTO snapshots from the signal store.

    snap = build_snapshot(recipe, "data/signal.duckdb", root="data/snapshots")
    snap.version, snap.path, snap.manifest["counts"]

The rules live in SQL (`signals/sql/build_*.sql`, run in order on one connection, the
recipe bound as session variables: `steps`) so that the heavy work is DuckDB's:

1. `build_interactions`: parse prompts once; exclude by privacy (forgotten, opted
   out, retention), filters and lengths, each with its reason; hash the normalized
   prompt; give each interaction a split bucket.
2. `build_outcomes`: the latest decisive feedback per interaction.
3. `build_examples`: SFT, preference (edit, choose, regen) and KTO candidates.
4. `build_select`: split, de-duplicate, cap per user, drop benchmark prompts from
   train, decontaminate (no normalized prompt in both splits); the snapshot's members.

Then PII is redacted in the texts that are exported (`redact`), the manifest's figures
are taken (`summary`), the six Parquet files are written in chunks of consecutive rows
of the store, so memory stays bounded as the store grows (`export`), and the snapshot is
versioned by a hash of its bytes and recipe, moved into the root and recorded in the
store with its members (`publish`), so that revocation (signals.snapshot) can withdraw
every snapshot with a forgotten user's data. The same store and recipe give the same
files and version; an identical existing snapshot is reused. What a snapshot *is*, and
reading it, belong to signals.snapshot.

Between steps the build keeps narrow temp tables, `build_*`, keyed by `rid` (an
interaction's row in the store), and drops each one as soon as it is used.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from signals import keys, snapshot
from signals import store as store_mod
from signals.build import export, publish, redact, steps, summary
from signals.build.publish import BUILDER_VERSION
from signals.build.settings import BuildSettings
from signals.build.summary import kto_weights
from signals.recipe import normalize

__all__ = ["BUILDER_VERSION", "BuildSettings", "build_snapshot", "kto_weights"]


def build_snapshot(recipe: dict, store: str | os.PathLike | duckdb.DuckDBPyConnection,
                   root: str | os.PathLike = "data/snapshots", *, settings: BuildSettings | None = None,
                   progress: bool | None = None) -> snapshot.Snapshot:
    """Build (or reuse the identical existing) snapshot of `recipe` from `store` (a path
    or an open read-write connection) into `root`. `settings`: BuildSettings.from_env()
    when not given; `progress`: a progress bar (default: when stderr is a terminal)."""
    r = normalize(recipe)
    settings = settings or BuildSettings.from_env()
    if not isinstance(store, duckdb.DuckDBPyConnection) and not Path(store).exists():
        raise FileNotFoundError(f"signal store {store} does not exist: ingest first "
                                "(python -m signals ingest PATH --store FILE)")
    con = store if isinstance(store, duckdb.DuckDBPyConnection) else store_mod.open_store(store)
    try:
        keys.install(con)              # tombstones are keyed hashes: build_interactions.sql compares keyed_hash()
        return _build(con, r, Path(root), settings, _progress(progress))
    finally:
        steps.drop_temp_tables(con)
        if con is not store:
            con.close()


def _build(con: duckdb.DuckDBPyConnection, r: dict, root: Path, settings: BuildSettings, bar) -> snapshot.Snapshot:
    settings.apply(con)
    steps.bind(con, r, pii_prefilter=redact.PII_PREFILTER)
    con.execute(steps.sql("build_macros"))
    bar.set_description("build: interactions")
    steps.run(con, "build_interactions")
    steps.load_benchmark(con, r["split"]["benchmark_prompts"])
    bar.update()
    if r["split"]["method"] == "time" and r["split"]["cutoff"] is None:
        steps.bind_newest_cutoff(con, r["split"]["eval_fraction"], r["split"]["eval_count"])
    elif r["split"]["method"] != "time" and r["split"]["eval_count"] is not None:
        steps.bind_eval_count(con, r["split"]["eval_count"])
    for step in steps.STEPS[1:]:
        bar.set_description(f"build: {step.removeprefix('build_')}")
        steps.run(con, step)
        bar.update()

    bar.set_description("build: redact PII")
    redactions = redact.redact(con, r["privacy"]["redact_pii"])
    bar.update()

    # what the manifest needs, before the export drops the tables it came from
    figures = summary.summary(con)
    bar.set_description("build: write")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        files = export.export(con, tmp, settings.export_chunk)
        manifest = {
            "version": publish.version_of(r, files),
            "recipe": r,
            "counts": figures["counts"],
            "exclusions": figures["exclusions"],
            "watermark": summary.watermark(con),
            "builder_version": BUILDER_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "redactions": redactions,
            "kto_classes": figures["kto_classes"],
            "kto_weights": kto_weights(figures["kto_classes"]["train"], r["kto"]),
            "files": files,
        }
        snap = publish.publish(con, root, tmp, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bar.update()
    bar.close()
    return snap


def _progress(enabled: bool | None):
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=len(steps.STEPS) + 2, disable=not enabled, unit="step")
