-- User feedback events per UTC day and kind (index page: "what users did, day by day").
SELECT
    CAST(timezone('UTC', ts) AS DATE) AS day,
    kind,
    count(*)                          AS events
FROM feedback
GROUP BY ALL
ORDER BY day, kind
