-- name: upsert_schedule
-- Stores one schedule of a Task's spec. :next_fire_at is the next fire time
-- computed from now (NULL when the schedule is malformed, with :last_error saying
-- why). An unchanged
-- cron and timezone keep the stored next_fire_at, so re-applying a Task neither
-- skips nor repeats a tick; a changed one, a schedule that was malformed, or one
-- being resumed from suspend starts again from now.
INSERT INTO schedules (namespace, task, name, cron, timezone, payload, missed_runs,
                       catchup_limit, suspended, next_fire_at, last_error)
VALUES (:namespace, :task, :name, :cron, :timezone, :payload::jsonb, :missed_runs,
        :catchup_limit, :suspended, :next_fire_at, :last_error)
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
-- Removes the schedules of a Task that its spec no longer lists (:keep).
DELETE FROM schedules
WHERE namespace = :namespace AND task = :task AND NOT (name = ANY(:keep::text[]))
RETURNING name;

-- name: lock_due_schedules
-- First statement of a scheduler pass: the active schedules due at :now (the
-- scheduler's clock), oldest first, at most :limit. SKIP LOCKED leaves the rows
-- another scheduler is firing to it; once that one commits, next_fire_at has
-- moved on and the row is no longer due. With a leader epoch, nothing is locked
-- unless that epoch is still the current one.
SELECT s.namespace, s.task, s.name, s.cron, s.timezone, s.payload, s.missed_runs,
       s.catchup_limit, s.suspended, s.next_fire_at, s.last_fire_at, s.last_error,
       s.updated_at
FROM schedules s
WHERE NOT s.suspended AND s.next_fire_at IS NOT NULL AND s.next_fire_at <= :now
  AND EXISTS (SELECT 1 FROM tasks t WHERE t.namespace = s.namespace AND t.name = s.task
              AND t.deleted_at IS NULL)
  AND (:leader_epoch::bigint IS NULL
       OR EXISTS (SELECT 1 FROM leadership l WHERE l.epoch = :leader_epoch FOR SHARE))
ORDER BY s.next_fire_at
LIMIT :limit
FOR UPDATE OF s SKIP LOCKED;

-- name: advance_schedule
-- After its firings were enqueued (same transaction): the next fire time, and
-- the newest fire time enqueued, if any.
UPDATE schedules
SET next_fire_at = :next_fire_at,
    last_fire_at = coalesce(:last_fire_at, last_fire_at),
    last_error = NULL,
    updated_at = now()
WHERE namespace = :namespace AND task = :task AND name = :name
RETURNING next_fire_at;

-- name: record_schedule_error
-- A schedule that cannot fire: why, and its next fire time (NULL stops it until
-- its Task is applied again with a fixed schedule).
UPDATE schedules
SET last_error = :last_error,
    next_fire_at = :next_fire_at,
    updated_at = now()
WHERE namespace = :namespace AND task = :task AND name = :name
RETURNING name;

-- name: list_schedules
-- Schedules of active Tasks, for `waypost schedules list` and Task status.
SELECT s.namespace, s.task, s.name, s.cron, s.timezone, s.payload, s.missed_runs,
       s.catchup_limit, s.suspended, s.next_fire_at, s.last_fire_at, s.last_error,
       s.updated_at
FROM schedules s
JOIN tasks t ON t.namespace = s.namespace AND t.name = s.task AND t.deleted_at IS NULL
WHERE (:namespace::text IS NULL OR s.namespace = :namespace)
  AND (:task::text IS NULL OR s.task = :task)
ORDER BY s.namespace, s.task, s.name;

-- name: get_schedule
SELECT s.namespace, s.task, s.name, s.cron, s.timezone, s.payload, s.missed_runs,
       s.catchup_limit, s.suspended, s.next_fire_at, s.last_fire_at, s.last_error,
       s.updated_at
FROM schedules s
JOIN tasks t ON t.namespace = s.namespace AND t.name = s.task AND t.deleted_at IS NULL
WHERE s.namespace = :namespace AND s.task = :task AND s.name = :name;

-- name: delete_task_schedules
-- A deleted Task's schedules stop with it.
DELETE FROM schedules WHERE namespace = :namespace AND task = :task
RETURNING name;
