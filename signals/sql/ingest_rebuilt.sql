-- raw_src(ln, line) for a chunked SQL mapping, whose mapped lines are parsed as they are made and
-- never kept: the raw text of a conflicting record (quarantine, reason conflict) is that native
-- record rebuilt from its parsed fields, absent fields left out. Read only when there are conflicts.
CREATE OR REPLACE TEMP VIEW raw_src AS
SELECT ln, json_merge_patch('{}', CASE WHEN rtype = 'feedback' THEN json_object(
        'event_id', event_id, 'interaction_id', interaction_id, 'ts', ts, 'kind', kind, 'edited_text', edited_text,
        'score', score, 'other_interaction_id', other_interaction_id, 'user_id', user_id, 'metadata', metadata,
        '_source_row', source_row)
    ELSE json_object(
        'interaction_id', interaction_id, 'ts', ts, 'user_id', user_id, 'session_id', session_id, 'app', app,
        'task', task, 'model_id', model_id, 'prompt', prompt, 'completion', completion, 'metadata', metadata,
        'feedback', feedback_list, '_source_row', source_row) END)::VARCHAR AS line
FROM rec;
