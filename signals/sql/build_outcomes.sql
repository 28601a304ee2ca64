-- Build step 2: the outcome of every kept interaction = its latest decisive feedback.
-- Decisive: accept, reject, a non-trivial edit, a rating at/over b_rate_accept (accept)
-- or at/under b_rate_reject (reject); a choice only when b_choose_outcome (chosen =
-- accept, the other = reject). A trivial edit (normalized Levenshtein distance below
-- b_min_edit, whitespace collapsed) is not decisive (b_trivial_edit = 'ignore': the
-- decision before it stands) or an accept ('accept'); an edit to empty text is a reject.
-- Ties in time: edit > reject > accept, then event_id. An accept after an edit confirms
-- the edit when b_accept_keeps_edit.
-- First every edit on its own (the one step that reads texts): trivial, empty or a real edit.
CREATE OR REPLACE TEMP TABLE b_edit_judged AS
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
    SELECT f.event_id, b_norm(f.edited_text) AS e, b_norm(i.completion) AS c
    FROM feedback f JOIN interactions i ON i.interaction_id = f.interaction_id
    WHERE f.kind = 'edit' AND f.edited_text IS NOT NULL
);
CREATE OR REPLACE TEMP TABLE b_out AS
WITH kept AS (
    SELECT interaction_id FROM b_int WHERE excluded IS NULL
),
events AS (
    SELECT f.interaction_id, f.ts, f.event_id, f.kind, j.verdict = 'trivial' AS trivial,
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
    FROM feedback f SEMI JOIN kept k ON k.interaction_id = f.interaction_id
    LEFT JOIN b_edit_judged j ON f.kind = 'edit' AND j.event_id = f.event_id
    UNION ALL      -- the candidate not chosen
    SELECT f.other_interaction_id, f.ts, f.event_id, 'choose', false, 'reject'
    FROM feedback f SEMI JOIN kept k ON k.interaction_id = f.other_interaction_id
    WHERE f.kind = 'choose' AND getvariable('b_choose_outcome')
),
decided AS (SELECT * FROM events),
ranked AS (       -- narrow aggregate states: the latest edit is kept as its event id
    SELECT interaction_id,
        max_by(struct_pack(decision, kind),
               struct_pack(ts, prio := CASE decision WHEN 'edit' THEN 3 WHEN 'reject' THEN 2 ELSE 1 END, event_id))
            FILTER (WHERE decision IS NOT NULL) AS latest,
        max_by(event_id, struct_pack(ts, event_id)) FILTER (WHERE decision = 'edit') AS last_edit_event,
        bool_or(trivial) AS had_trivial_edit
    FROM decided
    GROUP BY interaction_id
)
SELECT interaction_id, outcome,
    CASE WHEN outcome = 'edit' THEN 'edit' ELSE latest.kind END AS origin,
    CASE WHEN outcome = 'edit' THEN last_edit_event END AS last_edit_event,
    coalesce(had_trivial_edit, false) AS had_trivial_edit
FROM (
    SELECT *,
        CASE WHEN latest.decision = 'accept' AND last_edit_event IS NOT NULL AND getvariable('b_accept_keeps_edit')
             THEN 'edit' ELSE latest.decision END AS outcome
    FROM ranked
);                 -- outcome NULL: feedback, none decisive
-- the edited texts of edit outcomes (the export joins them; PII redaction updates them)
CREATE OR REPLACE TEMP TABLE b_edits AS
SELECT o.interaction_id, f.edited_text, hash(f.edited_text) AS edit_hash
FROM b_out o JOIN feedback f ON f.event_id = o.last_edit_event
WHERE o.outcome = 'edit';
-- done with the per-edit verdicts (their memory is the export's)
DROP TABLE b_edit_judged;
