"""What is in the store: counts for people (`stats`) and machines (`stats --json`).

The JSON keys are a stable contract (documented in docs/signals.md):
interactions, feedback {kind: n}, pending, quarantined, quarantine {reason: n}, users,
opted_out, forgotten, ingests, sources {source: {files, records, interactions, feedback,
duplicates, quarantined}}, first_ts, last_ts.
"""

from __future__ import annotations

KINDS = ("accept", "edit", "reject", "rate", "choose")


def stats(con) -> dict:
    one = lambda q: con.execute(q).fetchone()[0]  # noqa: E731
    feedback = dict.fromkeys(KINDS, 0)
    feedback.update(dict(con.execute("SELECT kind, count(*) FROM feedback GROUP BY kind").fetchall()))
    quarantine = dict(con.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason").fetchall())
    sources = {}
    for src, files, records, inter, fb, dups, q in con.execute(
            "SELECT coalesce(source, 'native'), count(*), sum(records), sum(interactions), sum(feedback), "
            "sum(duplicates), sum(quarantined) FROM ingests GROUP BY 1 ORDER BY 1").fetchall():
        sources[src] = {"files": files, "records": int(records or 0), "interactions": int(inter or 0),
                        "feedback": int(fb or 0), "duplicates": int(dups or 0), "quarantined": int(q or 0)}
    first, last = con.execute("SELECT min(ts), max(ts) FROM interactions").fetchone()
    return {
        "interactions": one("SELECT count(*) FROM interactions"),
        "feedback": feedback,
        "pending": one("SELECT count(*) FROM pending_feedback"),
        "quarantined": sum(quarantine.values()),
        "quarantine": quarantine,
        "users": one("SELECT count(DISTINCT user_id) FROM (SELECT user_id FROM interactions "
                     "UNION ALL SELECT user_id FROM feedback) WHERE user_id IS NOT NULL"),
        "opted_out": one("SELECT count(*) FROM optouts"),
        "forgotten": one("SELECT count(*) FROM tombstones"),
        "ingests": one("SELECT count(*) FROM ingests"),
        "sources": sources,
        "first_ts": first.isoformat() if first else None,
        "last_ts": last.isoformat() if last else None,
    }


def render(s: dict) -> str:
    """The stats as a short human-readable report."""
    lines = [
        f"interactions  {s['interactions']:>10}",
        f"feedback      {sum(s['feedback'].values()):>10}  " + ", ".join(f"{k} {v}" for k, v in s["feedback"].items()),
        f"pending       {s['pending']:>10}  (feedback whose interaction has not arrived)",
        f"quarantined   {s['quarantined']:>10}  " + ", ".join(f"{k} {v}" for k, v in s["quarantine"].items()),
        f"users         {s['users']:>10}  (opted out {s['opted_out']}, forgotten {s['forgotten']})",
        f"ingests       {s['ingests']:>10}  time range {s['first_ts']} .. {s['last_ts']}",
    ]
    for src, c in s["sources"].items():
        lines.append(f"  source {src:<16} files {c['files']}, records {c['records']}, interactions "
                     f"{c['interactions']}, feedback {c['feedback']}, duplicates {c['duplicates']}, "
                     f"quarantined {c['quarantined']}")
    return "\n".join(lines)


def quarantine_rows(con, reason: str | None = None, limit: int | None = None):
    """The quarantine as a DuckDB relation, newest first (optionally one reason)."""
    q = ("SELECT source_path, source_row, reason, field, detail, raw, ingest_id, quarantined_at FROM quarantine "
         "WHERE ? IS NULL OR reason = ? ORDER BY ingest_id DESC, source_path, source_row")
    params = [reason, reason]
    if limit is not None:
        q += " LIMIT ?"
        params.append(int(limit))
    return con.sql(q, params=params)
