-- name: telemetry_events_after
-- What the leader's metrics (and run/queue-wait spans) are made of: status changes,
-- attempt starts and ends and checkpoints after the cursor (:after_tx, :after_id),
-- oldest first, at most :limit, below the commit horizon (same cursor rule as
-- events_after, migration 0012). Log lines are not read. Each event carries what a
-- series or span needs from its run (created_at for the run's duration; trace
-- context) and, for an attempt start, when the run became claimable: the queue wait
-- is measured on the database clock. available_at is read from the hot row while
-- the attempt still holds it; once it left (the attempt already finished), the first
-- attempt falls back to the run's creation, which is when it became claimable.
WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
SELECT h.horizon::text AS horizon, e.id, e.tx::text AS tx, e.run_id, e.kind, e.attempt,
       e.ts, e.data, e.namespace, e.task, e.queue, e.created_at, e.trace_id,
       e.parent_span_id, e.available_at
FROM h
LEFT JOIN LATERAL (
    SELECT e.id, e.tx, e.run_id, e.kind, e.attempt, e.ts, e.data, r.namespace, r.task,
           r.queue, r.created_at, r.trace_id, r.parent_span_id,
           CASE WHEN e.kind = 'attempt_started' THEN
               coalesce((SELECT q.available_at FROM run_queue q
                         WHERE q.run_id = e.run_id AND q.attempt = e.attempt),
                        CASE WHEN e.attempt = 1 THEN r.created_at END)
           END AS available_at
    FROM run_events e JOIN runs r ON r.id = e.run_id
    WHERE (e.tx, e.id) > (:after_tx::text::xid8, :after_id::bigint) AND e.tx < h.horizon
      AND e.kind IN ('status', 'attempt_started', 'attempt_finished', 'checkpoint')
    ORDER BY e.tx, e.id
    LIMIT :limit
) e ON true
ORDER BY e.tx, e.id;

-- name: runs_table_estimate
-- The planner's row count of runs (pg_class.reltuples, kept by autovacuum's
-- ANALYZE; -1 before the first) and its statistics of runs.status: the most common
-- values with their frequencies (pg_stats; a status absent from the sample is
-- missing). Reading them costs nothing whatever the table holds.
SELECT c.reltuples::float8 AS reltuples,
       (SELECT s.most_common_vals::text::text[] FROM pg_stats s
        WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'status')
           AS statuses,
       (SELECT s.most_common_freqs FROM pg_stats s
        WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'status')
           AS freqs
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = 'runs'::regclass;

-- name: active_status_counts
-- Exact counts of the runs still active: those of the small hot table, by their
-- run's status (primary-key lookups, never a scan of runs).
SELECT r.status, count(*) AS n
FROM run_queue q JOIN runs r ON r.id = q.run_id
GROUP BY r.status;
