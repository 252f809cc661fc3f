-- name: append_logs
-- A batch of log lines of the current attempt in one statement; nothing from a
-- superseded attempt.
INSERT INTO run_logs (run_id, attempt, ts, level, message, fields)
SELECT q.run_id, q.attempt, l.ts, l.level, l.message, l.fields
FROM run_queue q,
     unnest(:ts::timestamptz[], :levels::text[], :messages::text[], :fields::jsonb[])
         AS l(ts, level, message, fields)
WHERE q.run_id = :run_id AND q.claim_token = :claim_token AND q.state = 'running';

-- name: list_logs
SELECT attempt, ts, level, message, fields, seq FROM run_logs
WHERE run_id = :run_id AND seq > :after_seq ORDER BY seq LIMIT :limit;
