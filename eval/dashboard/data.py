"""Read what the dashboard shows from the store: signal, registry, snapshots.

Every reader tolerates a store that lacks a table (an old store, or a part of the
pipeline not run yet) and returns an empty result, so an empty store gives a page
that says so. Long queries live in `eval/dashboard/sql/*.sql`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import duckdb


def sql(name: str) -> str:
    """The text of `eval/dashboard/sql/{name}.sql`."""
    return resources.files("eval.dashboard").joinpath("sql", f"{name}.sql").read_text()


def rows(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> list[dict]:
    """Result rows as dicts keyed by column name."""
    cur = con.execute(query, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the tables and views in the store's main schema."""
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}


def as_json(value, default):
    """A JSON column as a Python value (DuckDB returns JSON as text)."""
    if value is None:
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


@dataclass
class SiteData:
    """Everything the pages are rendered from, read once from the store."""

    db: str
    store_found: bool = True
    tables: set[str] = field(default_factory=set)
    signal_per_day: list[dict] = field(default_factory=list)
    rates_per_app: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    evals: list[dict] = field(default_factory=list)
    metrics: dict[str, list[dict]] = field(default_factory=dict)   # eval_id -> eval_results rows
    aliases: list[dict] = field(default_factory=list)
    runs: dict[str, dict] = field(default_factory=dict)
    snapshots: dict[str, dict] = field(default_factory=dict)
    tainted: list[dict] = field(default_factory=list)

    @property
    def has_registry(self) -> bool:
        return {"decisions", "eval_results", "runs", "aliases"} <= self.tables

    @property
    def has_snapshots(self) -> bool:
        return "snapshots" in self.tables

    def production(self, alias: str = "production") -> dict | None:
        """The alias's current target: replayed from the append-only alias log."""
        moves = [a for a in self.aliases if a["alias"] == alias]
        if not moves or moves[-1]["run_id"] is None:
            return None
        last = moves[-1]
        since = last["ts"]
        run = self.runs.get(last["run_id"], {"run_id": last["run_id"]})
        return {**run, "since": since, "action": last["action"], "eval_id": last["eval_id"],
                "reason": last["reason"],
                "tainted": any(t["run_id"] == last["run_id"] for t in self.tainted)}


def load(db: str | Path, wait: float | None = None) -> SiteData:
    """Read the store at `db` read-only (never creating it). A missing file gives an empty
    SiteData; while another process writes to it, wait up to `wait` seconds (default
    `signals.store.DEFAULT_WAIT`), then `StoreLocked` naming that process."""
    from signals.store import DEFAULT_WAIT, open_store

    db = str(db)
    if not Path(db).exists():
        return SiteData(db=db, store_found=False)
    try:
        con = open_store(db, read_only=True, wait=DEFAULT_WAIT if wait is None else wait)
    except duckdb.IOException as e:
        raise RuntimeError(f"cannot open the signal store {db} read-only: {e} "
                           "(another process holds it read-write; retry when it finishes)") from e
    try:
        return _read(con, db)
    finally:
        con.close()


def _read(con: duckdb.DuckDBPyConnection, db: str) -> SiteData:
    from signals.secrets import from_env, scrub, scrub_all

    known = from_env()  # rows written before errors were scrubbed may still hold a key
    data = SiteData(db=db, tables=tables(con))
    if {"interactions", "feedback"} <= data.tables:
        data.signal_per_day = rows(con, sql("signal_per_day"))
        data.rates_per_app = rows(con, sql("rates_per_app"))
        data.totals = rows(con, "SELECT (SELECT count(*) FROM interactions) AS interactions, "
                                "(SELECT count(*) FROM feedback) AS feedback, "
                                "(SELECT min(ts) FROM feedback) AS first_ts, "
                                "(SELECT max(ts) FROM feedback) AS last_ts")[0]
    if data.has_snapshots:
        for s in rows(con, "SELECT * FROM snapshots ORDER BY created_at"):
            s["manifest"] = as_json(s.get("manifest"), {})
            data.snapshots[s["version"]] = s
    if not data.has_registry:
        return data
    for r in rows(con, "SELECT * FROM runs ORDER BY registered_at"):
        r["manifest"] = as_json(r.get("manifest"), {})
        data.runs[r["run_id"]] = r
    data.aliases = [dict(a, reason=scrub(a["reason"], known=known))
                    for a in rows(con, "SELECT * FROM aliases ORDER BY seq")]
    for e in rows(con, sql("evals")):
        for key, default in (("reasons", []), ("gate_config", {}), ("eval_config", {})):
            e[key] = scrub_all(as_json(e[key], default), known=known)
        if isinstance(e["reasons"], str):
            e["reasons"] = [e["reasons"]]
        e["error"] = scrub(e.get("error"), known=known)
        data.evals.append(e)
    for m in rows(con, "SELECT * FROM eval_results ORDER BY eval_id, metric"):
        m["details"] = as_json(m.get("details"), {})
        data.metrics.setdefault(m["eval_id"], []).append(m)
    if data.has_snapshots:
        data.tainted = rows(con, sql("tainted"))
    return data


def snapshot_manifest(data: SiteData, version: str | None) -> dict | None:
    """The snapshot's manifest: from the store's snapshots table, else its manifest.json."""
    if not version:
        return None
    snap = data.snapshots.get(version)
    if snap and isinstance(snap.get("manifest"), dict) and snap["manifest"]:
        return snap["manifest"]
    if snap and snap.get("path"):
        f = Path(snap["path"]) / "manifest.json"
        if f.is_file():
            return as_json(f.read_text(), None)
    return None


def snapshot_path(data: SiteData, version: str | None) -> str | None:
    """Where the snapshot's files are, per the store's snapshots table."""
    snap = data.snapshots.get(version or "")
    return snap.get("path") if snap else None
