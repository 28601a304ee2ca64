-- Build step 2: the outcome of every kept interaction = its latest decisive feedback.
-- Decisive: accept, reject, a non-trivial edit, a rating at/over b_rate_accept (accept)
-- or at/under b_rate_reject (reject); a choice only when b_choose_outcome (chosen =
-- accept, the other = reject). A trivial edit (normalized Levenshtein distance below
-- b_min_edit, whitespace collapsed) is not decisive (b_trivial_edit = 'ignore': the
-- decision before it stands) or an accept ('accept'); an edit to empty text is a reject.
-- Ties in time: edit > reject > accept, then event_id. An accept after an edit confirms
-- the edit when b_accept_keeps_edit.
-- First every edit on its own (the one step that reads texts): trivial, empty or a real edit.
CREATE OR REPLACE TEMP TABLE build_edit_verdicts AS
SELECT event_id,
    CASE
        WHEN e = '' THEN 'empty'
        WHEN e = c THEN 'trivial'
        -- the length gap bounds the distance from below: Levenshtein only where it does not decide
        WHEN abs(length(e) - length(c)) >= getvariable('b_min_edit') * greatest(length(e), length(c)) THEN 'edit'
        WHEN levenshtein(e, c) < getvariable('b_min_edit') * greatest(length(e), length(c)) THEN 'trivial'
        ELSE 'edit'
    END AS verdict
FROM (
    SELECT f.event_id, build_normalize(f.edited_text) AS e, build_normalize(i.completion) AS c
    FROM feedback f JOIN interactions i ON i.interaction_id = f.interaction_id
    WHERE f.kind = 'edit' AND f.edited_text IS NOT NULL
);
CREATE OR REPLACE TEMP TABLE build_outcomes AS
WITH kept AS (
    SELECT interaction_id, rid FROM build_interactions WHERE excluded IS NULL
),
events AS MATERIALIZED (     -- keyed by rid (the interaction's row in the store), as is build_outcomes
    SELECT k.rid, f.ts, f.event_id, f.kind, j.verdict = 'trivial' AS trivial,
        CASE f.kind
            WHEN 'accept' THEN 'accept'
            WHEN 'reject' THEN 'reject'
            WHEN 'rate' THEN CASE WHEN f.score >= getvariable('b_rate_accept') THEN 'accept'
                                  WHEN f.score <= getvariable('b_rate_reject') THEN 'reject' END
            WHEN 'choose' THEN CASE WHEN getvariable('b_choose_outcome') THEN 'accept' END
            WHEN 'edit' THEN CASE j.verdict WHEN 'edit' THEN 'edit' WHEN 'empty' THEN 'reject'
                                  WHEN 'trivial' THEN CASE WHEN getvariable('b_trivial_edit') = 'accept'
                                                           THEN 'accept' END END
        END AS decision
    FROM feedback f JOIN kept k ON k.interaction_id = f.interaction_id
    LEFT JOIN build_edit_verdicts j ON f.kind = 'edit' AND j.event_id = f.event_id
    UNION ALL      -- the candidate not chosen
    SELECT k.rid, f.ts, f.event_id, 'choose', false, 'reject'
    FROM feedback f JOIN kept k ON k.interaction_id = f.other_interaction_id
    WHERE f.kind = 'choose' AND getvariable('b_choose_outcome')
),
-- windows, not max_by over struct keys: those held wide states per interaction and spilled
latest AS (        -- the latest decisive event: by time, then edit > reject > accept, then event_id
    SELECT rid, decision, kind FROM events WHERE decision IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY rid ORDER BY ts DESC,
        CASE decision WHEN 'edit' THEN 3 WHEN 'reject' THEN 2 ELSE 1 END DESC, event_id DESC) = 1
),
last_edit AS (     -- the latest real edit (what an accept after it keeps)
    SELECT rid, event_id FROM events WHERE decision = 'edit'
    QUALIFY row_number() OVER (PARTITION BY rid ORDER BY ts DESC, event_id DESC) = 1
),
trivial AS (SELECT DISTINCT rid FROM events WHERE trivial)
SELECT rid, outcome::ENUM('accept', 'edit', 'reject') AS outcome,
    (CASE WHEN outcome = 'edit' THEN 'edit' ELSE kind END)::ENUM('accept', 'choose', 'edit', 'rate', 'reject') AS origin,
    CASE WHEN outcome = 'edit' THEN last_edit_event END AS last_edit_event,
    had_trivial_edit
FROM (
    SELECT rid, l.kind, e.event_id AS last_edit_event, t.rid IS NOT NULL AS had_trivial_edit,
        CASE WHEN l.decision = 'accept' AND e.event_id IS NOT NULL AND getvariable('b_accept_keeps_edit')
             THEN 'edit' ELSE l.decision END AS outcome
    FROM latest l FULL JOIN trivial t USING (rid) LEFT JOIN last_edit e USING (rid)
);                 -- outcome NULL: a trivial edit, nothing decisive (interactions with neither are left out)
-- the edited texts of edit outcomes (the export joins them; PII redaction updates them)
CREATE OR REPLACE TEMP TABLE build_edited_texts AS
SELECT o.rid, f.edited_text, hash(f.edited_text) AS edit_hash
FROM build_outcomes o JOIN feedback f ON f.event_id = o.last_edit_event
WHERE o.outcome = 'edit';
-- done with the per-edit verdicts (their memory is the export's)
DROP TABLE build_edit_verdicts;
-- the rest of the build needs of build_outcomes only the outcome, its origin and the trivial edits
CREATE OR REPLACE TEMP TABLE build_outcomes AS SELECT rid, outcome, origin, had_trivial_edit FROM build_outcomes;
