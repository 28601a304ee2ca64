-- Per app: outputs shown, and how users judged them. An output's verdict is its
-- latest accept/edit/reject event (an edit after an accept counts as an edit).
-- Ratings come with their scale: the distinct `metadata.scale` values the rate events
-- recorded (e.g. "1-5"), and the lowest and highest score given, which stand in for
-- the scale when none is recorded.
WITH verdicts AS (
    SELECT
        interaction_id,
        arg_max(kind, ts) AS verdict
    FROM feedback
    WHERE kind IN ('accept', 'edit', 'reject')
    GROUP BY interaction_id
),
ratings AS (
    SELECT interaction_id, avg(score) AS score
    FROM feedback
    WHERE kind = 'rate' AND score IS NOT NULL
    GROUP BY interaction_id
),
scales AS (
    SELECT
        coalesce(i.app, '(no app)')                                        AS app,
        list(DISTINCT json_extract_string(f.metadata, '$.scale'))
            FILTER (WHERE json_extract_string(f.metadata, '$.scale') IS NOT NULL) AS rating_scales,
        min(f.score)                                                       AS lowest_score,
        max(f.score)                                                       AS highest_score
    FROM feedback f
    JOIN interactions i USING (interaction_id)
    WHERE f.kind = 'rate' AND f.score IS NOT NULL
    GROUP BY ALL
),
per_app AS (
    SELECT
        coalesce(i.app, '(no app)')                   AS app,
        count(*)                                      AS shown,
        count(v.verdict)                              AS judged,
        count(*) FILTER (WHERE v.verdict = 'accept')  AS accepted,
        count(*) FILTER (WHERE v.verdict = 'edit')    AS edited,
        count(*) FILTER (WHERE v.verdict = 'reject')  AS rejected,
        count(r.score)                                AS rated,
        avg(r.score)                                  AS mean_rating
    FROM interactions i
    LEFT JOIN verdicts v USING (interaction_id)
    LEFT JOIN ratings r USING (interaction_id)
    GROUP BY ALL
)
SELECT p.*, s.rating_scales, s.lowest_score, s.highest_score
FROM per_app p
LEFT JOIN scales s USING (app)
ORDER BY p.shown DESC, p.app
