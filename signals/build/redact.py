"""PII redaction of the texts a snapshot exports (signals.pii), done once per distinct text.

Python's redactor is the slow part, so it sees as little as possible: build_interactions
flags (`pii`) the interactions whose prompt or completion the SQL prefilter below matches,
and only the texts of those members (and of edits) that match it are read back and
redacted; the rest never leave DuckDB.
"""

from __future__ import annotations

import duckdb

from signals.build.steps import sql

# A text no signals.pii pattern can match has none of these, so it skips the Python pass.
# Each term is what one pattern's every match must contain, with Python's Unicode \d as
# \p{Nd} and its \s as any non-digit (RE2's classes are ASCII-only): an email's @, a phone's
# two digit groups and separator, a card's 13 digits, an IPv4's three dots, an IPv6's hex
# colon, a secret's prefix. Years, order numbers and "Note:" do not match.
# tests/signals/test_build_rules.py checks it against the redactor.
PII_PREFILTER = (r"@|\p{Nd}\p{Nd}\P{Nd}\p{Nd}\p{Nd}|(?:\p{Nd}[ -]?){12}\p{Nd}"
                 r"|\p{Nd}\.\p{Nd}{1,3}\.\p{Nd}{1,3}\.\p{Nd}|[0-9A-Fa-f]:[0-9A-Fa-f:]"
                 r"|sk-|AKIA|gh[pousr]_|github_pat_|xox[abprs]-|AIza|hf_|eyJ|Bearer ")

_MSG = "STRUCT(role VARCHAR, content VARCHAR)"

# the distinct texts of the members that the prefilter matches: prompt messages, completions, edits
_CANDIDATES = """
    WITH used AS (
        SELECT i.completion,
               from_json(i.prompt, '[{"role":"VARCHAR","content":"VARCHAR"}]') AS prompt
        FROM interactions i SEMI JOIN build_pii_members u ON u.rid = i.rowid
    )
    SELECT DISTINCT t FROM (
        SELECT unnest(list_filter(list_transform(prompt, lambda m: m.content),
                                  lambda t: regexp_matches(t, $p))) AS t FROM used
        UNION ALL
        SELECT completion FROM used WHERE regexp_matches(completion, $p)
        UNION ALL
        SELECT o.edited_text FROM build_edited_texts o SEMI JOIN build_members u USING (rid)
        WHERE regexp_matches(o.edited_text, $p))"""


def redact(con: duckdb.DuckDBPyConnection, enabled: bool) -> dict[str, int]:
    """Redact the PII in every exported text; returns PII spans replaced per kind.

    Leaves build_redactions (text -> redacted text) and build_redacted_texts (the redacted
    prompt and/or completion per member that has PII, which the export joins), empty when
    `enabled` is false; edits are redacted in place in build_edited_texts. Each distinct
    text is redacted once, so counts are over distinct texts.
    """
    con.execute("CREATE OR REPLACE TEMP TABLE build_redactions (t VARCHAR, r VARCHAR)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE build_redacted_texts (rid BIGINT, prompt {_MSG}[], "
                "completion VARCHAR)")
    if not enabled:
        return {}
    from signals import pii

    con.execute("CREATE OR REPLACE TEMP TABLE build_pii_members AS SELECT rid FROM build_members "
                "JOIN build_interactions USING (rid) WHERE build_interactions.pii")
    totals: dict[str, int] = {}
    changed_from, changed_to = [], []
    # streamed in batches: only the texts that change are kept in Python
    for batch in con.sql(_CANDIDATES, params={"p": PII_PREFILTER}).to_arrow_reader(50_000):
        for text in batch.column(0).to_pylist():
            red, counts = pii.redact(text)
            if red != text:
                changed_from.append(text)
                changed_to.append(red)
            for k, n in counts.items():
                if n:
                    totals[k] = totals.get(k, 0) + int(n)
    con.execute("CREATE OR REPLACE TEMP TABLE build_redactions AS "
                "SELECT unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS r", [changed_from, changed_to])
    if changed_from:
        con.execute(sql("build_redact"))
    return dict(sorted(totals.items()))
