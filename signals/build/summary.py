"""What the manifest says about a build: counts per kind and split, why interactions and
candidates were left out, the KTO classes and their loss weights, and what the store held."""

from __future__ import annotations

import duckdb

from signals.snapshot import KINDS, SPLITS


def summary(con: duckdb.DuckDBPyConnection) -> dict:
    """The manifest's counts per kind and split, KTO classes and exclusions, from one pass
    over the examples (and the interactions' reasons). Read before the export, which drops
    the tables they come from."""
    counts = {kind: {split: 0 for split in SPLITS} for kind in KINDS}
    kto_classes = {split: {"desirable": 0, "undesirable": 0} for split in SPLITS}
    dropped: dict[str, int] = {}
    for kind, is_eval, label, reason, n in con.execute(
            "SELECT kind, is_eval, label, dropped, count(*) FROM build_examples GROUP BY ALL").fetchall():
        split = "eval" if is_eval else "train"
        if reason is not None:
            dropped[f"{kind}.{reason}"] = dropped.get(f"{kind}.{reason}", 0) + n
            continue
        counts[kind][split] += n
        if kind == "kto":
            kto_classes[split]["desirable" if label else "undesirable"] += n
    return {"counts": counts, "kto_classes": kto_classes,
            "exclusions": dict(sorted({**_exclusions(con), **dropped}.items()))}


def _exclusions(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Why interactions did not become examples (`summary` adds the examples' `kind.reason`)."""
    out: dict[str, int] = {}
    for reason, n in con.execute("SELECT excluded, count(*) FROM build_interactions "
                                 "WHERE excluded IS NOT NULL GROUP BY ALL").fetchall():
        out[reason] = n
    no_signal = con.execute("""
        SELECT count(*) FROM build_interactions i
        WHERE i.excluded IS NULL
          AND NOT EXISTS (SELECT 1 FROM build_outcomes o WHERE o.rid = i.rid AND o.outcome IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM build_examples e WHERE e.rid = i.rid)
          AND NOT EXISTS (SELECT 1 FROM build_examples e WHERE e.other_rid = i.rid)""").fetchone()[0]
    if no_signal:
        out["no_decisive_feedback"] = no_signal
    trivial = con.execute("SELECT count(*) FROM build_outcomes "
                          "WHERE had_trivial_edit AND outcome IS DISTINCT FROM 'edit'").fetchone()[0]
    if trivial:
        out["pref.trivial_edit"] = trivial
    return out


def watermark(con: duckdb.DuckDBPyConnection) -> dict:
    """What the store held when the snapshot was built."""
    i = con.execute("SELECT count(*), max(ts), max(ingest_id) FROM interactions").fetchone()
    f = con.execute("SELECT count(*), max(ts) FROM feedback").fetchone()
    o = con.execute("SELECT count(*) FROM optouts").fetchone()[0]
    t = con.execute("SELECT count(*) FROM tombstones").fetchone()[0]
    return {"interactions": i[0], "max_interaction_ts": i[1].isoformat() if i[1] else None,
            "max_ingest_id": i[2], "feedback": f[0], "max_feedback_ts": f[1].isoformat() if f[1] else None,
            "optouts": o, "tombstones": t}


def kto_weights(classes: dict, kto: dict | None = None) -> dict:
    """Desirable/undesirable loss weights per TRL's KTO guidance.

    TRL (Eq. 8 of the KTO paper) wants desirable_weight * n_desirable /
    (undesirable_weight * n_undesirable) in [1, 4/3]. The minority class is
    up-weighted to land at 7/6, inside the range, with margin for TRL's rounding:

    >>> kto_weights({"desirable": 100, "undesirable": 300})
    {'desirable_weight': 3.5, 'undesirable_weight': 1.0}
    >>> kto_weights({"desirable": 120, "undesirable": 100})
    {'desirable_weight': 1.0, 'undesirable_weight': 1.0}

    Weights given in the recipe (`kto.desirable_weight` / `undesirable_weight`) win.
    """
    n_d, n_u = classes.get("desirable", 0), classes.get("undesirable", 0)
    des, und = 1.0, 1.0
    if n_d and n_u:
        ratio = n_d / n_u
        if ratio < 1:
            des = round(n_u / n_d * 7 / 6, 4)
        elif ratio > 4 / 3:
            und = round(n_d / n_u * 6 / 7, 4)
    kto = kto or {}
    if kto.get("desirable_weight") is not None:
        des = float(kto["desirable_weight"])
    if kto.get("undesirable_weight") is not None:
        und = float(kto["undesirable_weight"])
    return {"desirable_weight": des, "undesirable_weight": und}
