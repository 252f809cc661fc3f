-- name: run_events_after
-- The events of run :run_id after the cursor (:after_tx, :after_id), oldest first,
-- at most :limit. Only events of transactions below the horizon, the oldest
-- transaction still running, are read (migration 0012 explains why that keeps
-- cursors exact); the horizon comes back on every row, and alone on one row of
-- NULLs when no event does. Filters: :kinds, log lines of :attempt, log :levels,
-- not before :since. A status row stands for the attempt event folded into it too
-- (migration 0025), so :kinds keeps it for either; store.events unfolds the row and
-- keeps the events of :kinds after the cursor. The row at the cursor itself is read
-- again when it folds in an attempt start, which comes after it.
WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
SELECT h.horizon::text AS horizon, e.id, e.tx::text AS tx, e.run_id, r.namespace, r.task,
       e.kind, e.attempt, e.ts, e.data
FROM h
LEFT JOIN LATERAL (
    SELECT e.id, e.tx, e.run_id, e.kind, e.attempt, e.ts, e.data FROM run_events e
    WHERE e.run_id = :run_id AND (e.tx, e.id) >= (:after_tx::text::xid8, :after_id::bigint)
      AND ((e.tx, e.id) <> (:after_tx::text::xid8, :after_id::bigint)
           OR e.data ? 'attemptStarted')
      AND e.tx < h.horizon
      AND (:kinds::text[] IS NULL OR e.kind = ANY(:kinds::text[])
           OR (e.kind = 'status' AND e.data ? 'attemptStarted'
               AND 'attempt_started' = ANY(:kinds::text[]))
           OR (e.kind = 'status' AND e.data ? 'attemptFinished'
               AND 'attempt_finished' = ANY(:kinds::text[])))
      AND (:attempt::int IS NULL OR e.kind <> 'log' OR e.attempt = :attempt)
      AND (:levels::text[] IS NULL OR e.kind <> 'log'
           OR e.data ->> 'level' = ANY(:levels::text[]))
      AND (:since::timestamptz IS NULL OR e.ts >= :since)
    ORDER BY e.tx, e.id
    LIMIT :limit
) e ON true
LEFT JOIN runs r ON r.id = e.run_id
ORDER BY e.tx, e.id;

-- name: events_after
-- Everyone's events after the cursor (:after_tx, :after_id), oldest first, at most
-- :limit: the coordinator's pump reads this once per tick for all its subscribers.
-- :run_ids (an array literal, see store.events.RunIds; parsed once per read in h,
-- not once per row as a generic plan's bare cast did) limits it to some runs,
-- :namespace/:task to a namespace/task. Same
-- horizon rule and answer shape as run_events_after, plus the snapshot's xmax (the
-- next transaction id; the pump's arming rule in migration 0015 needs it) and
-- any_new: whether any run's events came after the cursor, filters or not (the
-- pump stays busy, and writers un-notified, while any do). As in
-- run_events_after, the row at the cursor is read again when it folds in an
-- attempt start (migration 0025).
-- Both parts walk run_events_by_tx from the cursor, so a read costs what is new,
-- not what is stored: any_new is the first event by that index, bounded by the
-- horizon in the index condition (as EXISTS the planner scanned the whole table for
-- it; joined to h, every event above a horizon that an open transaction held back),
-- and each event's run is looked up by
-- its key (OFFSET 0 keeps that a per-row lookup: joined, the planner hashed the
-- whole runs table on every read, 20 ms at 10,000 runs).
WITH h AS (SELECT pg_snapshot_xmin(s) AS horizon, pg_snapshot_xmax(s) AS xmax,
                  :run_ids::text::uuid[] AS run_ids
           FROM pg_current_snapshot() s),
n AS (SELECT (
    SELECT a.tx FROM run_events a
    WHERE (a.tx, a.id) > (:after_tx::text::xid8, :after_id::bigint)
      AND a.tx < (SELECT horizon FROM h)
    ORDER BY a.tx, a.id
    LIMIT 1
) IS NOT NULL AS any_new)
SELECT h.horizon::text AS horizon, h.xmax::text AS xmax, n.any_new, e.id, e.tx::text AS tx,
       e.run_id, e.namespace, e.task, e.kind, e.attempt, e.ts, e.data
FROM h CROSS JOIN n
LEFT JOIN LATERAL (
    SELECT e.id, e.tx, e.run_id, r.namespace, r.task, e.kind, e.attempt, e.ts, e.data
    FROM run_events e
    CROSS JOIN LATERAL (
        SELECT r.namespace, r.task FROM runs r WHERE r.id = e.run_id OFFSET 0
    ) r
    WHERE (e.tx, e.id) >= (:after_tx::text::xid8, :after_id::bigint)
      AND ((e.tx, e.id) <> (:after_tx::text::xid8, :after_id::bigint)
           OR e.data ? 'attemptStarted')
      AND e.tx < h.horizon
      AND (h.run_ids IS NULL OR e.run_id = ANY(h.run_ids))
      AND (:namespace::text IS NULL OR r.namespace = :namespace)
      AND (:task::text IS NULL OR r.task = :task)
    ORDER BY e.tx, e.id
    LIMIT :limit
) e ON true
ORDER BY e.tx, e.id;

-- name: event_reader_session
-- The event pump's own connection plans its reads once (store.events.reader_session).
SET plan_cache_mode = force_generic_plan;

-- name: event_horizon
-- Where a stream that starts now begins: every event below it is already written.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon;

-- name: arm_event_reader
-- Reader :reader sleeps until a NOTIFY on waypost_events (migration 0015): writers
-- send one while its row is armed, until :seconds from now at most. Expired rows of
-- readers that died go at the same time.
WITH gone AS (
    DELETE FROM run_event_readers WHERE armed_until < now() - interval '1 minute'
)
INSERT INTO run_event_readers (reader, armed_until)
VALUES (:reader, now() + make_interval(secs => :seconds))
ON CONFLICT (reader) DO UPDATE SET armed_until = excluded.armed_until;

-- name: disarm_event_reader
-- Reader :reader reads again (or stops): writers need not wake it.
DELETE FROM run_event_readers WHERE reader = :reader;
