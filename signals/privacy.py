"""Privacy operations on the store: opt-out, forget (right to erasure), retention.

    optout(con, ["u1"])        # data stays, never exported (builders skip `optouts`)
    forget(con, ["u1"])        # deleted everywhere + hashed tombstone; reports snapshots
    retain(con, days=365)      # purge what is older

Each runs in one transaction. A tombstone is sha256(user_id), so the store keeps no
readable id, yet an ingest of an old log that names the user (or one of their
interactions) skips those records.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from signals import snapshot
from signals.store import transaction


def user_hash(user_id: str) -> str:
    import hashlib

    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def optout(con, users: list[str]) -> dict:
    """Mark users as opted out: their data stays in the store and is never exported."""
    with transaction(con):
        before = con.execute("SELECT count(*) FROM optouts").fetchone()[0]
        for u in users:
            con.execute("INSERT INTO optouts VALUES (?, now()) ON CONFLICT DO NOTHING", [u])
        after = con.execute("SELECT count(*) FROM optouts").fetchone()[0]
    return {"users": len(users), "added": after - before, "opted_out_total": after}


_RAW_USER = r'"user_id"\s*:\s*"' + "{}" + '"'


def forget(con, users: list[str], reason: str = "forget") -> dict:
    """Delete every interaction, feedback event (pending ones too) and quarantined record of
    `users`; leave hashed tombstones; revoke (signals.snapshot.revoke) the snapshots that
    held their data.

    Returns {"users", "interactions", "feedback", "quarantine", "snapshots": [versions],
    "revoked": bool}.
    """
    import re

    users = sorted(set(users))
    report = {"users": len(users), "interactions": 0, "feedback": 0, "quarantine": 0, "snapshots": [], "revoked": False}
    if not users:
        return report
    with transaction(con):
        con.execute("CREATE OR REPLACE TEMP TABLE forget_users AS SELECT unnest(?::VARCHAR[]) AS user_id", [users])
        con.execute("CREATE OR REPLACE TEMP TABLE forget_ids AS SELECT interaction_id FROM interactions "
                    "WHERE user_id IN (SELECT user_id FROM forget_users)")
        report["snapshots"] = snapshot.holding_users(con, users)
        report["feedback"] = con.execute(
            "DELETE FROM feedback WHERE user_id IN (SELECT user_id FROM forget_users) "
            "OR interaction_id IN (SELECT interaction_id FROM forget_ids)").fetchone()[0]
        report["interactions"] = con.execute(
            "DELETE FROM interactions WHERE interaction_id IN (SELECT interaction_id FROM forget_ids)").fetchone()[0]
        pattern = "|".join(_RAW_USER.format(re.escape(u)) for u in users)
        report["quarantine"] = con.execute(
            "DELETE FROM quarantine WHERE user_id IN (SELECT user_id FROM forget_users) OR regexp_matches(raw, ?)",
            [pattern]).fetchone()[0]
        con.execute("DELETE FROM optouts WHERE user_id IN (SELECT user_id FROM forget_users)")
        con.execute("INSERT INTO tombstones SELECT sha256(user_id), now() FROM forget_users ON CONFLICT DO NOTHING")
        con.execute("INSERT INTO forgotten_interactions SELECT sha256(interaction_id), now() FROM forget_ids "
                    "ON CONFLICT DO NOTHING")
        con.execute("DROP TABLE forget_users; DROP TABLE forget_ids")
    if report["snapshots"]:
        snapshot.revoke(con, report["snapshots"], f"{reason}: {len(users)} user(s) forgotten")
        report["revoked"] = True
    return report


def retain(con, days: int | None = None, *, now: datetime | None = None, save: bool = False) -> dict:
    """Purge interactions, feedback and quarantine older than `days` (default: the
    `retention_days` setting). `save=True` stores `days` as the policy."""
    if days is None:
        row = con.execute("SELECT value FROM settings WHERE key = 'retention_days'").fetchone()
        if row is None:
            raise ValueError("no retention policy: pass --days N (and --save to keep it as the policy)")
        days = int(row[0])
    if days < 0:
        raise ValueError(f"--days must be >= 0, got {days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    with transaction(con):
        if save:
            con.execute("INSERT OR REPLACE INTO settings VALUES ('retention_days', ?)", [str(days)])
        con.execute("CREATE OR REPLACE TEMP TABLE old_ids AS SELECT interaction_id FROM interactions WHERE ts < ?", [cutoff])
        fb = con.execute("DELETE FROM feedback WHERE ts < ? OR interaction_id IN (SELECT interaction_id FROM old_ids)",
                         [cutoff]).fetchone()[0]
        it = con.execute("DELETE FROM interactions WHERE interaction_id IN (SELECT interaction_id FROM old_ids)").fetchone()[0]
        q = con.execute("DELETE FROM quarantine WHERE quarantined_at < ?", [cutoff]).fetchone()[0]
        con.execute("DROP TABLE old_ids")
    return {"days": days, "cutoff": cutoff.isoformat(), "interactions": it, "feedback": fb, "quarantine": q}
