-- Build step 6: what the export writes, narrow (rows of the store and flags, no texts), and the chunks it
-- is written in. The files' row order is (is_eval, rid, origin, other_rid, label), rid being
-- the interaction's row in the store: chunks are ranges of rid, so each chunk's texts are a
-- range of `interactions` (read without scanning the rest), joined and sorted on their own
-- (memory bounded by the chunk, not by the store), and the chunks, written one after the
-- other, give the files in that order. Each table the export does not read is dropped as
-- soon as it has been used, so the export's tables are built without spilling them (the
-- chunks would read them back from disk); build_members stays: the store records it.
DROP TABLE build_interactions;
DROP TABLE build_outcomes;
CREATE OR REPLACE TEMP TABLE build_export_rows AS
SELECT kind, is_eval, rid, origin, other_rid, label, a_edit, b_other
FROM build_examples WHERE dropped IS NULL;
DROP TABLE build_examples;
-- what of the exported interactions' texts is not as stored: their edits and PII-redacted
-- prompts/completions (NULL: as stored); a few, so the table is small
CREATE OR REPLACE TEMP TABLE build_changed_texts AS
SELECT rid, d.edited_text, p.prompt AS redacted_prompt, p.completion AS redacted_completion
FROM build_edited_texts d FULL JOIN build_redacted_texts p USING (rid)
WHERE rid IN (SELECT rid FROM build_members);
DROP TABLE build_edited_texts;
-- the rejected side of pairs that is another interaction's output (PII redacted)
CREATE OR REPLACE TEMP TABLE build_rejected_texts AS
SELECT DISTINCT e.rid, e.other_rid, coalesce(p.completion, j.completion) AS completion
FROM build_export_rows e JOIN interactions j ON j.rowid = e.other_rid
LEFT JOIN build_redacted_texts p ON p.rid = e.other_rid
WHERE e.kind = 'pref' AND e.b_other;
DROP TABLE build_redacted_texts;
-- whether a row is in the chunk being written: [b_lo, b_hi), b_hi NULL = no bound
CREATE OR REPLACE TEMP MACRO build_in_chunk(x) AS
    x >= getvariable('b_lo') AND (getvariable('b_hi') IS NULL OR x < getvariable('b_hi'));
