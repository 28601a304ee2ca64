-- Per app: outputs shown, and how users judged them. An output's verdict is its
-- latest accept/edit/reject event (an edit after an accept counts as an edit).
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
)
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
ORDER BY shown DESC, app
