-- name: upsert_schedule
-- Stores one schedule of a Task's spec. $10 is the next fire time computed from
-- now (NULL when the schedule is malformed, with $11 saying why). An unchanged
-- cron and timezone keep the stored next_fire_at, so re-applying a Task neither
-- skips nor repeats a tick; a changed one, a schedule that was malformed, or one
-- being resumed from suspend starts again from now.
INSERT INTO schedules (namespace, task, name, cron, timezone, payload, missed_runs,
                       catchup_limit, suspended, next_fire_at, last_error)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11)
ON CONFLICT (namespace, task, name) DO UPDATE
    SET cron = excluded.cron,
        timezone = excluded.timezone,
        payload = excluded.payload,
        missed_runs = excluded.missed_runs,
        catchup_limit = excluded.catchup_limit,
        suspended = excluded.suspended,
        next_fire_at = CASE
            WHEN excluded.next_fire_at IS NULL THEN NULL
            WHEN schedules.next_fire_at IS NULL
              OR schedules.cron IS DISTINCT FROM excluded.cron
              OR schedules.timezone IS DISTINCT FROM excluded.timezone
              OR (schedules.suspended AND NOT excluded.suspended)
                THEN excluded.next_fire_at
            ELSE schedules.next_fire_at
        END,
        last_error = excluded.last_error,
        updated_at = now()
RETURNING next_fire_at;

-- name: delete_schedules_not_in
-- Removes the schedules of a Task that its spec no longer lists ($3).
DELETE FROM schedules
WHERE namespace = $1 AND task = $2 AND NOT (name = ANY($3::text[]))
RETURNING name;

-- name: lock_due_schedules
-- First statement of a scheduler pass: the active schedules due at $1 (the
-- scheduler's clock), oldest first, at most $2. SKIP LOCKED leaves the rows
-- another scheduler is firing to it; once that one commits, next_fire_at has
-- moved on and the row is no longer due. With a leader epoch ($3), nothing is
-- locked unless that epoch is still the current one.
SELECT s.namespace, s.task, s.name, s.cron, s.timezone, s.payload, s.missed_runs,
       s.catchup_limit, s.suspended, s.next_fire_at, s.last_fire_at, s.last_error,
       s.updated_at
FROM schedules s
WHERE NOT s.suspended AND s.next_fire_at IS NOT NULL AND s.next_fire_at <= $1
  AND EXISTS (SELECT 1 FROM tasks t WHERE t.namespace = s.namespace AND t.name = s.task
              AND t.deleted_at IS NULL)
  AND ($3::bigint IS NULL
       OR EXISTS (SELECT 1 FROM leadership l WHERE l.epoch = $3 FOR SHARE))
ORDER BY s.next_fire_at
LIMIT $2
FOR UPDATE OF s SKIP LOCKED;

-- name: advance_schedule
-- After its firings were enqueued (same transaction): the next fire time, and
-- the newest fire time enqueued, if any.
UPDATE schedules
SET next_fire_at = $4,
    last_fire_at = coalesce($5, last_fire_at),
    last_error = NULL,
    updated_at = now()
WHERE namespace = $1 AND task = $2 AND name = $3
RETURNING next_fire_at;

-- name: record_schedule_error
-- A schedule that cannot fire: why ($4), and its next fire time ($5; NULL stops
-- it until its Task is applied again with a fixed schedule).
UPDATE schedules
SET last_error = $4,
    next_fire_at = $5,
    updated_at = now()
WHERE namespace = $1 AND task = $2 AND name = $3
RETURNING name;

-- name: list_schedules
-- Schedules of active Tasks, for `waypost schedules list` and Task status.
SELECT s.namespace, s.task, s.name, s.cron, s.timezone, s.payload, s.missed_runs,
       s.catchup_limit, s.suspended, s.next_fire_at, s.last_fire_at, s.last_error,
       s.updated_at
FROM schedules s
JOIN tasks t ON t.namespace = s.namespace AND t.name = s.task AND t.deleted_at IS NULL
WHERE ($1::text IS NULL OR s.namespace = $1)
  AND ($2::text IS NULL OR s.task = $2)
ORDER BY s.namespace, s.task, s.name;

-- name: get_schedule
SELECT s.namespace, s.task, s.name, s.cron, s.timezone, s.payload, s.missed_runs,
       s.catchup_limit, s.suspended, s.next_fire_at, s.last_fire_at, s.last_error,
       s.updated_at
FROM schedules s
JOIN tasks t ON t.namespace = s.namespace AND t.name = s.task AND t.deleted_at IS NULL
WHERE s.namespace = $1 AND s.task = $2 AND s.name = $3;

-- name: delete_task_schedules
-- A deleted Task's schedules stop with it.
DELETE FROM schedules WHERE namespace = $1 AND task = $2
RETURNING name;
