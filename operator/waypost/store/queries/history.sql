-- name: expire_finished_runs
-- One batch of a retention pass: up to :batch finished runs (succeeded, failed,
-- cancelled; never dead letters) that ended before their Task's retention
-- (tasks.retain_seconds, else :default_seconds) counted back from :now, deleted
-- with their attempts, checkpoints, logs, events and replay records (ON DELETE
-- CASCADE). Per Task an exact range of runs_expirable, so a pass reads only what
-- is due, never the history it keeps. :default_seconds = 0 keeps the runs of Tasks
-- without a retention of their own. FOR UPDATE SKIP LOCKED: a run someone changes
-- right now (a failed run being requeued) is left for the next pass instead of
-- waited for, and the lock re-checks finished_at, so a run requeued meanwhile is
-- not deleted. Claims never read these rows (finished runs are not in run_queue);
-- the NOT EXISTS is a guard, not a filter that does work.
WITH policy AS (
    SELECT t.namespace, t.name,
           :now::timestamptz
             - make_interval(secs => coalesce(t.retain_seconds, :default_seconds)) AS cutoff
    FROM tasks t
    WHERE coalesce(t.retain_seconds, :default_seconds) > 0
), due AS (
    SELECT d.id FROM policy p CROSS JOIN LATERAL (
        SELECT r.id FROM runs r
        WHERE r.namespace = p.namespace AND r.task = p.name
          AND r.finished_at IS NOT NULL AND r.status <> 'dead_lettered'
          AND r.finished_at < p.cutoff
        ORDER BY r.finished_at
        LIMIT :batch
        FOR UPDATE OF r SKIP LOCKED
    ) d
    LIMIT :batch
)
-- The ids as an array: a join with `due` was planned as a sequential scan of all
-- of `runs` (the planner expects :batch rows per Task); = ANY probes the primary key.
DELETE FROM runs r
WHERE r.id = ANY (ARRAY(SELECT d.id FROM due d))
  AND NOT EXISTS (SELECT 1 FROM run_queue q WHERE q.run_id = r.id)
RETURNING r.status;

-- name: expire_dead_letters
-- One batch of dead-lettered runs that nobody requeued or deleted within the
-- dead-letter retention (they ended before :cutoff), oldest first, through
-- runs_dead_lettered. Same locking as expire_finished_runs: a dead letter being
-- requeued right now is skipped, and one requeued since is no longer dead_lettered.
WITH due AS (
    SELECT r.id FROM runs r
    WHERE r.status = 'dead_lettered' AND r.finished_at < :cutoff
    ORDER BY r.finished_at
    LIMIT :batch
    FOR UPDATE OF r SKIP LOCKED
)
-- The ids as an array: a join with `due` was planned as a sequential scan of all
-- of `runs` (the planner expects :batch rows per Task); = ANY probes the primary key.
DELETE FROM runs r
WHERE r.id = ANY (ARRAY(SELECT d.id FROM due d))
  AND NOT EXISTS (SELECT 1 FROM run_queue q WHERE q.run_id = r.id)
RETURNING r.status;
