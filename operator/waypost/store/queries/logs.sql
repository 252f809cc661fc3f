-- name: append_logs
-- A batch of log lines of the current attempt in one statement; nothing from a
-- superseded attempt.
INSERT INTO run_logs (run_id, attempt, ts, level, message, fields)
SELECT q.run_id, q.attempt, l.ts, l.level, l.message, l.fields
FROM run_queue q,
     unnest($3::timestamptz[], $4::text[], $5::text[], $6::jsonb[]) AS l(ts, level, message, fields)
WHERE q.run_id = $1 AND q.claim_token = $2 AND q.state = 'running';

-- name: list_logs
SELECT attempt, ts, level, message, fields, seq FROM run_logs
WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3;
