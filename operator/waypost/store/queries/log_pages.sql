-- name: run_log_tail
-- The UI's log pane: the newest :limit log lines of run :run_id before the cursor
-- (:before_tx, :before_id; NULL: the end), of :attempt and :levels when given,
-- newest first. Like
-- run_events_after it reads below the commit horizon only and returns the horizon on
-- every row (alone on one row of NULLs when no line matches), so that following the
-- log from there (run_events_after) misses nothing and repeats nothing.
WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
SELECT h.horizon::text AS horizon, e.id, e.tx::text AS tx, e.attempt, e.ts, e.data
FROM h
LEFT JOIN LATERAL (
    SELECT e.id, e.tx, e.attempt, e.ts, e.data FROM run_events e
    WHERE e.run_id = :run_id AND e.kind = 'log' AND e.tx < h.horizon
      AND (:before_tx::text IS NULL
           OR (e.tx, e.id) < (:before_tx::text::xid8, :before_id::bigint))
      AND (:attempt::int IS NULL OR e.attempt = :attempt)
      AND (:levels::text[] IS NULL OR e.data ->> 'level' = ANY(:levels::text[]))
    ORDER BY e.tx DESC, e.id DESC
    LIMIT :limit
) e ON true
ORDER BY e.tx DESC, e.id DESC;
