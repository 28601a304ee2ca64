"""Privacy operations on the store: opt-out, forget (right to erasure), retention.

    optout(con, ["u1"])        # data stays, never exported (builders skip `optouts`)
    forget(con, ["u1"])        # deleted everywhere + hashed tombstone; reports snapshots
    retain(con, days=365)      # purge what is older

Each runs in one transaction. A tombstone is a keyed hash of the user id (HMAC under a
key kept outside the store, signals/keys.py: what happens when the key is lost, how to
rotate it), so the store keeps no id that a copy of it could confirm, yet an ingest of an
old log that names the user (or one of their interactions) skips those records.
`signals.erasure.forget` adds what a connection cannot do: rewriting the store file (so
freed blocks keep no deleted text), the erasure receipt, and `verify`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from signals import snapshot
from signals.store import transaction


def user_hash(con, user_id: str) -> str:
    """The keyed hash the store keeps of `user_id` (signals.keys.keyed under the store's key)."""
    from signals import keys

    return keys.keyed(keys.install(con), user_id)


def optout(con, users: list[str]) -> dict:
    """Mark users as opted out: their data stays in the store and is never exported."""
    with transaction(con):
        before = con.execute("SELECT count(*) FROM optouts").fetchone()[0]
        for u in users:
            con.execute("INSERT INTO optouts VALUES (?, now()) ON CONFLICT DO NOTHING", [u])
        after = con.execute("SELECT count(*) FROM optouts").fetchone()[0]
    _publish(con)
    return {"users": len(users), "added": after - before, "opted_out_total": after}


def _publish(con) -> None:
    """Refresh `<store>.suppress`, the list a live gateway reads to stop logging these users."""
    from signals import keys, suppress

    path = keys.store_path(con)
    if path is not None:
        suppress.refresh(con, path)


# A user id in a quarantined raw line, parsed or not: the value of every "user_id" (or
# "user", the key itself possibly \u-escaped) as JSON text, decoded below with
# json_extract_string, so any JSON escaping of the id (\u00e9, \", \\) and non-string
# ids (12, true) compare as their text.
_RAW_USER_VALUE = r'"user(?:_|\\u005[fF])?(?:id)?"\s*:\s*("(?:[^"\\]|\\.)*"|[^\s,}\]]+)'


def forget(con, users: list[str], reason: str = "forget", *, new_key: bool = False) -> dict:
    """Delete every interaction, feedback event (pending ones too, and the user's edits
    and choices on other users' interactions), quarantined record, optout and cached
    LLM-judge verdict of `users`; leave keyed tombstones (signals.keys) of the users and
    their interaction ids; revoke (signals.snapshot.revoke) the snapshots that held
    their text (as owners, or as authors of an edit or a choice), deleting their files.

    Any number of users: they are loaded into a temp table and joined. The store file
    still holds the deleted text in freed blocks: signals.erasure.forget rewrites it.

    Returns {"users", "interactions", "feedback", "pending", "quarantine", "optouts",
    "judgments", "snapshots": [versions], "revoked": bool, "snapshot_files": [{version,
    path, purged}]}.
    """
    from signals import keys

    users = sorted({str(u) for u in users})
    report = {"users": len(users), "interactions": 0, "feedback": 0, "pending": 0, "quarantine": 0, "optouts": 0,
              "judgments": 0, "snapshots": [], "revoked": False, "snapshot_files": []}
    if not users:
        return report
    keys.install(con, new_key=new_key)
    with transaction(con):
        con.execute("CREATE OR REPLACE TEMP TABLE forget_users AS "
                    "SELECT u AS user_id, keyed_hash(u) AS h FROM unnest(?::VARCHAR[]) t(u)", [users])
        con.execute("CREATE OR REPLACE TEMP TABLE forget_ids AS SELECT interaction_id FROM interactions "
                    "SEMI JOIN forget_users USING (user_id)")
        # interactions that hold the users' text though another user owns them (their edits, their choices)
        con.execute("CREATE OR REPLACE TEMP TABLE forget_touched AS "
                    "SELECT interaction_id FROM forget_ids UNION "
                    "SELECT interaction_id FROM feedback SEMI JOIN forget_users USING (user_id) UNION "
                    "SELECT other_interaction_id FROM feedback SEMI JOIN forget_users USING (user_id) "
                    "WHERE other_interaction_id IS NOT NULL")
        report["snapshots"] = snapshot.holding(con, "forget_users", "forget_touched")
        con.execute("CREATE OR REPLACE TEMP TABLE forget_fb AS SELECT event_id, interaction_id FROM feedback f "
                    "WHERE user_id IN (SELECT user_id FROM forget_users) "
                    "OR interaction_id IN (SELECT interaction_id FROM forget_ids) "
                    "OR other_interaction_id IN (SELECT interaction_id FROM forget_ids)")
        report["pending"] = con.execute("SELECT count(*) FROM forget_fb f WHERE NOT EXISTS "
                                        "(SELECT 1 FROM interactions i WHERE i.interaction_id = f.interaction_id)"
                                        ).fetchone()[0]
        _live_dirty(con, "event_id IN (SELECT event_id FROM forget_fb)")
        report["feedback"] = con.execute(
            "DELETE FROM feedback WHERE event_id IN (SELECT event_id FROM forget_fb)").fetchone()[0]
        report["interactions"] = con.execute(
            "DELETE FROM interactions WHERE interaction_id IN (SELECT interaction_id FROM forget_ids)").fetchone()[0]
        _live_forget(con, "forget_ids")
        report["quarantine"] = _forget_quarantine(con)
        report["optouts"] = con.execute(
            "DELETE FROM optouts WHERE user_id IN (SELECT user_id FROM forget_users)").fetchone()[0]
        report["judgments"] = _forget_judgments(con)
        con.execute("INSERT INTO tombstones SELECT h, now() FROM forget_users ON CONFLICT DO NOTHING")
        con.execute("INSERT INTO forgotten_interactions SELECT DISTINCT keyed_hash(interaction_id), now() "
                    "FROM forget_ids ON CONFLICT DO NOTHING")
        con.execute("DROP TABLE forget_users; DROP TABLE forget_ids; DROP TABLE forget_touched; DROP TABLE forget_fb")
    _publish(con)
    if report["snapshots"]:
        snapshot.revoke(con, report["snapshots"], f"{reason}: {len(users)} user(s) forgotten",
                        touched=report["snapshot_files"])
        report["revoked"] = True
    return report


# Quarantined records of the users in temp table forget_users (or about their interactions in
# forget_ids): by the `user_id` column, by the parsed top-level user_id and interaction_id
# when the raw line is JSON, and by every "user_id" value in the raw text decoded from its
# JSON escaping (lines that do not parse, nested records). Rows: r = quarantine.rowid.
QUARANTINE_MATCHES = """
WITH q AS (SELECT rowid AS r, raw, user_id, coalesce(json_valid(raw), false) AS ok FROM quarantine),
ids AS (
    SELECT r, user_id AS v FROM q
    UNION ALL SELECT r, json_extract_string(raw, '$.user_id') FROM q WHERE ok
    UNION ALL SELECT r, unnest(list_transform(regexp_extract_all(raw, '""" + _RAW_USER_VALUE.replace("'", "''") + """', 1),
                               lambda x: coalesce(try(json_extract_string(x, '$')), x))) FROM q
)
SELECT r FROM ids WHERE v IN (SELECT user_id FROM forget_users)
UNION SELECT r FROM q WHERE ok AND json_extract_string(raw, '$.interaction_id') IN (SELECT interaction_id FROM forget_ids)
"""


def _forget_quarantine(con) -> int:
    con.execute("CREATE OR REPLACE TEMP TABLE forget_q AS " + QUARANTINE_MATCHES)
    n = con.execute("DELETE FROM quarantine WHERE rowid IN (SELECT r FROM forget_q)").fetchone()[0]
    con.execute("DROP TABLE forget_q")
    return n


def _forget_judgments(con) -> int:
    """Cached LLM-judge verdicts about the users' interactions (judgment_subjects), and every
    verdict with no subject recorded (pre-0004 rows: whose text they judged is unknown)."""
    n = con.execute("DELETE FROM judgments WHERE key IN (SELECT key FROM judgment_subjects WHERE interaction_id IN "
                    "(SELECT interaction_id FROM forget_touched)) "
                    "OR key NOT IN (SELECT key FROM judgment_subjects)").fetchone()[0]
    con.execute("DELETE FROM judgment_subjects WHERE key NOT IN (SELECT key FROM judgments) "
                "OR interaction_id IN (SELECT interaction_id FROM forget_touched)")
    return n


# live_outcomes (migration 0008, eval/live.py) holds a row per interaction, user ids included:
# the rows of deleted interactions go in the same transaction, and the interactions whose
# feedback a delete changes are listed for eval.live.refresh_outcomes to recompute.
def _live_dirty(con, where: str, params: list | None = None) -> None:
    """List the interactions the feedback rows matching `where` (about to be deleted) are about."""
    con.execute(f"INSERT INTO live_outcomes_dirty SELECT DISTINCT x FROM (SELECT unnest([interaction_id, "
                f"other_interaction_id]) AS x FROM feedback WHERE {where}) WHERE x IS NOT NULL", params or [])


def _live_forget(con, ids_table: str) -> None:
    """Delete the live_outcomes rows (and dirty marks) of the deleted interactions in `ids_table`."""
    for table in ("live_outcomes", "live_outcomes_dirty"):
        con.execute(f"DELETE FROM {table} WHERE interaction_id IN (SELECT interaction_id FROM {ids_table})")


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
        _live_dirty(con, "ts < $1 OR interaction_id IN (SELECT interaction_id FROM old_ids)", [cutoff])
        fb = con.execute("DELETE FROM feedback WHERE ts < ? OR interaction_id IN (SELECT interaction_id FROM old_ids)",
                         [cutoff]).fetchone()[0]
        it = con.execute("DELETE FROM interactions WHERE interaction_id IN (SELECT interaction_id FROM old_ids)").fetchone()[0]
        _live_forget(con, "old_ids")
        q = con.execute("DELETE FROM quarantine WHERE quarantined_at < ?", [cutoff]).fetchone()[0]
        con.execute("DROP TABLE old_ids")
    return {"days": days, "cutoff": cutoff.isoformat(), "interactions": it, "feedback": fb, "quarantine": q}
