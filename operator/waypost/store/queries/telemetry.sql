-- name: telemetry_events_after
-- What the leader's metrics (and run/queue-wait spans) are made of: status changes,
-- attempt starts and ends and checkpoints after the cursor (:after_tx, :after_id),
-- oldest first, at most :limit, below the commit horizon (same cursor rule as
-- events_after, migration 0012). Log lines are not read, nor a run's change to
-- running (no series or span is made of it; the attempt start says the same).
-- Lean on purpose (the leader runs it every second beside the dispatcher): the page
-- is cut from the (tx, id) index first and only its rows are joined to their runs;
-- of each event's data only the fields a series or span uses are read (a status
-- event carries the run's whole result, which is never decoded here). Every event
-- has its run (the foreign key deletes a run's events with it); the outer join
-- keeps the horizon's row when there is no event. Each event carries what a series
-- or span needs from its run (created_at for the run's duration; trace context)
-- and, for an attempt start, when the run became claimable: the queue wait is
-- measured on the database clock.
-- available_at is the attempt's start less the queue wait its event carries
-- (migration 0022). An event written before that has none: it is read from the hot
-- row while the attempt still holds it; once it left (the attempt already
-- finished), the first attempt falls back to the run's creation, which is when it
-- became claimable.
WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
SELECT h.horizon::text AS horizon, e.id, e.tx::text AS tx, e.run_id, e.kind, e.attempt,
       e.ts, e.data ->> 'status' AS status, e.data ? 'previous' AS has_previous,
       e.data ->> 'source' AS source, e.data ->> 'failureType' AS failure_type,
       coalesce((e.data ->> 'oomKilled')::boolean, false) AS oom_killed,
       (e.data ->> 'durationMs')::float8 AS duration_ms,
       (e.data ->> 'sizeBytes')::bigint AS size_bytes,
       e.data #>> '{error,type}' AS error_type,
       r.namespace, r.task, r.queue, r.created_at, r.trace_id, r.parent_span_id,
       r.parent_sampled,
       CASE WHEN e.kind = 'attempt_started' THEN
           coalesce(e.ts - make_interval(secs => (e.data ->> 'queueWaitMs')::float8 / 1000),
                    (SELECT q.available_at FROM run_queue q
                     WHERE q.run_id = e.run_id AND q.attempt = e.attempt),
                    CASE WHEN e.attempt = 1 THEN r.created_at END)
       END AS available_at
FROM h
LEFT JOIN LATERAL (
    SELECT e.id, e.tx, e.run_id, e.kind, e.attempt, e.ts, e.data
    FROM run_events e
    WHERE (e.tx, e.id) > (:after_tx::text::xid8, :after_id::bigint) AND e.tx < h.horizon
      AND e.kind IN ('status', 'attempt_started', 'attempt_finished', 'checkpoint')
      AND NOT (e.kind = 'status' AND e.data ->> 'status' = 'running')
    ORDER BY e.tx, e.id
    LIMIT :limit
) e ON true
LEFT JOIN runs r ON r.id = e.run_id
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
