-- name: telemetry_page
-- What the leader's metrics and run/queue-wait spans are made of, one page of the
-- event log at a time: the status changes, attempt starts and ends and checkpoints
-- after the cursor (:after_tx, :after_id), oldest first, at most :limit stored rows,
-- below the commit horizon (same cursor rule as events_after, migration 0012). Log
-- lines are not read, nor a run's change to running (no series or span is made of
-- it; the attempt start says the same) unless it carries that attempt start.
-- Lean on purpose (the leader runs it every second beside the dispatcher): the page
-- is cut from the (tx, id) index first and only its rows are joined to their runs;
-- of each event's data only the fields a series or span uses are read (a status
-- event carries the run's whole result, which is never decoded here).
-- The series are summed here, not in the leader's interpreter: the page comes back
-- as one 'tally' row per (task, series, label, histogram bucket) with its count and
-- sum (a few rows for a page of 2,000 events; fetching and decoding a row per event
-- was most of the reader's CPU). A histogram observation's bucket is the index of
-- the first of its upper bounds (:second_bounds, :byte_bounds, without +Inf) that
-- is >= the value, as prometheus_client places it; past the last one, +Inf.
-- With :spans, the events a span is made of (a run's end, an attempt's start) come
-- back too, in log order with their run's trace context, as one JSON array in the
-- 'end' row: only those of the runs the sampler records (sdk.tracing.TraceSampler, decided here so
-- that the leader decodes no row of a dropped trace): under :parent_based the
-- caller's sampled flag when the run has a caller, else the trace id's lower 64
-- bits below :sample_bound. The
-- last row, 'end', says how many stored rows the page held, where its last event
-- is, and the horizon.
-- A queue wait is measured on the database clock: available_at (when the run
-- became claimable) is the attempt's start less the queue wait its event carries
-- (migration 0022). An event written before that has none: it is read from the hot
-- row while the attempt still holds it; once it left (the attempt already
-- finished), the first attempt falls back to the run's creation, which is when it
-- became claimable.
-- Every event has its run (the foreign key deletes a run's events with it).
WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon),
page AS MATERIALIZED (
    SELECT e.id, e.tx, e.run_id, e.kind, e.attempt, e.ts, e.data
    FROM run_events e, h
    WHERE (e.tx, e.id) > (:after_tx::text::xid8, :after_id::bigint) AND e.tx < h.horizon
      AND e.kind IN ('status', 'attempt_started', 'attempt_finished', 'checkpoint')
      AND NOT (e.kind = 'status' AND e.data ->> 'status' = 'running'
               AND NOT e.data ? 'attemptStarted')
    ORDER BY e.tx, e.id
    LIMIT :limit
),
-- The events a stored row stands for: itself (but not a change to running), and the
-- attempt event a status row may carry (migration 0025: an attempt's start folded
-- into the change to running, at id + 1; a successful attempt's end into the change
-- to succeeded, at id - 1).
unfolded AS (
    SELECT p.id, p.tx, p.run_id, p.kind, p.attempt, p.ts, p.data FROM page p
    WHERE NOT (p.kind = 'status' AND p.data ->> 'status' = 'running')
    UNION ALL
    SELECT p.id + 1, p.tx, p.run_id, 'attempt_started', p.attempt, p.ts,
           p.data -> 'attemptStarted'
    FROM page p WHERE p.kind = 'status' AND p.data ? 'attemptStarted'
    UNION ALL
    SELECT p.id - 1, p.tx, p.run_id, 'attempt_finished', p.attempt, p.ts,
           p.data -> 'attemptFinished'
    FROM page p WHERE p.kind = 'status' AND p.data ? 'attemptFinished'
),
sig AS MATERIALIZED (
    SELECT p.id, p.tx, p.run_id, p.kind, p.attempt, p.ts,
           p.data ->> 'status' AS status, p.data ? 'previous' AS has_previous,
           p.data ->> 'source' AS source, p.data ->> 'failureType' AS failure_type,
           coalesce((p.data ->> 'oomKilled')::boolean, false) AS oom_killed,
           (p.data ->> 'durationMs')::float8 AS duration_ms,
           (p.data ->> 'sizeBytes')::bigint AS size_bytes,
           p.data #>> '{error,type}' AS error_type,
           r.namespace, r.task, r.queue, r.created_at, r.trace_id, r.parent_span_id,
           r.parent_sampled,
           CASE WHEN p.kind = 'attempt_started' THEN
               coalesce(p.ts - make_interval(secs => (p.data ->> 'queueWaitMs')::float8 / 1000),
                        (SELECT q.available_at FROM run_queue q
                         WHERE q.run_id = p.run_id AND q.attempt = p.attempt),
                        CASE WHEN p.attempt = 1 THEN r.created_at END)
           END AS available_at
    FROM unfolded p JOIN runs r ON r.id = p.run_id
),
-- What each event adds to a series: (series, its label past the task's or NULL for
-- none, the observed value or NULL for a counter).
obs AS (
    SELECT s.namespace, s.task, o.series, o.label, o.value
    FROM sig s
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.status = 'failed' THEN coalesce(s.failure_type, 'error')
                    ELSE s.status END AS outcome,
               s.kind = 'status' AND s.has_previous
                   AND s.status IN ('succeeded', 'failed', 'dead_lettered', 'cancelled')
                   AS ended
    ) x
    CROSS JOIN LATERAL (VALUES
        ('triggered', coalesce(s.source, 'api'), NULL::float8,
         s.kind = 'status' AND NOT s.has_previous),
        ('finished', coalesce(s.status, ''), NULL, x.ended),
        ('run_duration', coalesce(s.status, ''),
         greatest(0, extract(epoch FROM s.ts - s.created_at))::float8, x.ended),
        ('dead_lettered', NULL, NULL, x.ended AND s.status = 'dead_lettered'),
        ('retries', NULL, NULL, s.kind = 'status' AND s.has_previous AND s.status = 'retrying'),
        ('queue_wait', NULL, greatest(0, extract(epoch FROM s.ts - s.available_at))::float8,
         s.available_at IS NOT NULL),
        ('attempts', coalesce(x.outcome, ''), NULL, s.kind = 'attempt_finished'),
        ('attempt_duration', coalesce(x.outcome, ''), greatest(0, s.duration_ms / 1000),
         s.kind = 'attempt_finished' AND s.duration_ms IS NOT NULL),
        ('oom_kills', NULL, NULL, s.kind = 'attempt_finished' AND s.oom_killed),
        ('checkpoint_size', NULL, s.size_bytes::float8,
         s.kind = 'checkpoint' AND s.size_bytes IS NOT NULL)
    ) o(series, label, value, applies)
    WHERE o.applies
),
tally AS (
    SELECT b.namespace, b.task, b.series, b.label, b.bucket, count(*) AS n,
           sum(b.value) AS total
    FROM (
        SELECT obs.*,
               CASE WHEN obs.value IS NOT NULL THEN
                   (SELECT count(*) FROM unnest(CASE WHEN obs.series = 'checkpoint_size'
                                                     THEN :byte_bounds::float8[]
                                                     ELSE :second_bounds::float8[] END) u(le)
                    WHERE u.le < obs.value)::int
               END AS bucket
        FROM obs
    ) b
    GROUP BY b.namespace, b.task, b.series, b.label, b.bucket
)
SELECT 'tally' AS what, NULL::text AS horizon, NULL::bigint AS id, NULL::text AS tx,
       t.namespace, t.task, t.series, t.label, t.bucket, t.n, t.total, NULL::text AS spans
FROM tally t
UNION ALL
SELECT 'end', h.horizon::text, last.id, last.tx::text, NULL, NULL, NULL, NULL, NULL,
       (SELECT count(*) FROM page), NULL,
       -- The page's span rows as one JSON text (the leader hands it to its span
       -- exporter process as it is: it decodes no row of them). Times in
       -- microseconds since the epoch.
       (SELECT json_agg(json_build_array(
                   s.tx::text, s.id, s.run_id, s.kind, s.attempt,
                   (extract(epoch FROM s.ts) * 1000000)::bigint, s.namespace, s.task,
                   s.queue, (extract(epoch FROM s.created_at) * 1000000)::bigint,
                   s.trace_id, s.parent_span_id, s.parent_sampled,
                   (extract(epoch FROM s.available_at) * 1000000)::bigint, s.status,
                   s.has_previous, s.error_type) ORDER BY s.tx, s.id)::text
        FROM sig s
        WHERE :spans::boolean
          AND ((s.kind = 'status' AND s.has_previous
                AND s.status IN ('succeeded', 'failed', 'dead_lettered', 'cancelled'))
               OR (s.kind = 'attempt_started' AND s.available_at IS NOT NULL))
          AND CASE WHEN :parent_based::boolean AND s.parent_sampled IS NOT NULL
                   THEN s.parent_sampled
                   -- The trace id's lower 64 bits, unsigned, below the sampler's bound.
                   ELSE ('x' || substr(s.trace_id, 17, 16))::bit(64)::bigint::numeric
                            + CASE WHEN substr(s.trace_id, 17, 1) >= '8'
                                   THEN 18446744073709551616 ELSE 0 END
                        < :sample_bound::text::numeric END)
FROM h
LEFT JOIN LATERAL (
    -- The last event the page's last row stands for (its folded attempt start, at
    -- id + 1, comes after it).
    SELECT p.id + CASE WHEN p.kind = 'status' AND p.data ? 'attemptStarted' THEN 1 ELSE 0 END
               AS id, p.tx
    FROM page p ORDER BY p.tx DESC, p.id DESC LIMIT 1
) last ON true;

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
