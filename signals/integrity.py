"""Is the store sound? `check_integrity(con)` lists what is wrong (nothing, after any ingest)."""

from __future__ import annotations

from signals.ingest import TS_MAX, TS_MIN


def check_integrity(con, *, exact: bool = True) -> list[str]:
    """Problems found in the store (an empty list when it is sound), for tests and audits:

    - no NULL key or required field in interactions and feedback;
    - every ts inside the accepted range [TS_MIN, TS_MAX);
    - each feedback kind carries its payload (edit: edited_text, rate: a finite score,
      choose: other_interaction_id);
    - every feedback row either joins its interaction or is listed in pending_feedback;
    - every stored or quarantined row names an ingest that exists, and per ingest the rows
      stored and quarantined equal the counts its `ingests` row records (with exact=False,
      at most those counts: `forget` and `retain` delete rows after ingest).
    """
    problems: list[str] = []

    def count(q: str, params=()) -> int:
        return con.execute(q, list(params)).fetchone()[0]

    checks = [
        ("interactions with a NULL key or required field",
         "SELECT count(*) FROM interactions WHERE interaction_id IS NULL OR interaction_id = '' OR ts IS NULL "
         "OR prompt IS NULL OR completion IS NULL"),
        ("feedback with a NULL key or required field",
         "SELECT count(*) FROM feedback WHERE event_id IS NULL OR event_id = '' OR interaction_id IS NULL "
         "OR ts IS NULL OR kind IS NULL"),
        (f"interactions with ts outside [{TS_MIN}, {TS_MAX})",
         "SELECT count(*) FROM interactions WHERE NOT (ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ)", [TS_MIN, TS_MAX]),
        (f"feedback with ts outside [{TS_MIN}, {TS_MAX})",
         "SELECT count(*) FROM feedback WHERE NOT (ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ)", [TS_MIN, TS_MAX]),
        ("feedback without the payload of its kind",
         "SELECT count(*) FROM feedback WHERE (kind = 'edit' AND edited_text IS NULL) "
         "OR (kind = 'rate' AND (score IS NULL OR isnan(score) OR isinf(score))) "
         "OR (kind = 'choose' AND other_interaction_id IS NULL)"),
        ("feedback neither joined to its interaction nor pending",
         "SELECT (SELECT count(*) FROM feedback) - (SELECT count(*) FROM feedback f SEMI JOIN interactions i "
         "USING (interaction_id)) - (SELECT count(*) FROM pending_feedback)"),
        ("rows naming an ingest that does not exist",
         "SELECT count(*) FROM (SELECT ingest_id FROM interactions UNION ALL SELECT ingest_id FROM feedback "
         "UNION ALL SELECT ingest_id FROM quarantine) r WHERE ingest_id IS NOT NULL "
         "AND ingest_id NOT IN (SELECT ingest_id FROM ingests)"),
    ]
    for what, q, *params in checks:
        n = count(q, *params)
        if n:
            problems.append(f"{n} {what}")
    op = "<>" if exact else ">"
    for table, col in (("interactions", "interactions"), ("feedback", "feedback"), ("quarantine", "quarantined")):
        bad = con.execute(
            f"SELECT g.ingest_id, coalesce(t.n, 0), g.{col} FROM ingests g LEFT JOIN "
            f"(SELECT ingest_id, count(*) AS n FROM {table} GROUP BY ingest_id) t USING (ingest_id) "
            f"WHERE coalesce(t.n, 0) {op} coalesce(g.{col}, 0) ORDER BY 1 LIMIT 5").fetchall()
        problems += [f"ingest {i}: {n} rows in {table}, its ingests row records {want}" for i, n, want in bad]
    return problems
