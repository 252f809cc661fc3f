-- History retention: finished runs expire after their Task's spec.history.retainFor
-- (the installation's default when unset), dead-lettered runs after the longer
-- dead-letter retention; the leader removes them in small batches (store/history.py).
-- * tasks.retain_seconds: the Task's retainFor in seconds, NULL for "the
--   installation's default", so that the retention statement needs no JSON parsing
--   of durations.
-- * runs_expirable: finished runs other than dead letters, by task and end time,
--   so that a retention pass reads only rows that are due (an exact range per Task)
--   and never walks the history it keeps. Dead letters already have
--   runs_dead_lettered (finished_at).
--
-- Rolling upgrade (docs/migrations.md): additions only. A replica of the previous
-- release upserts Tasks without retain_seconds (the column keeps what the new
-- release wrote, or NULL: the installation's default) and never expires anything.
-- The index is built inside the migration's transaction: writes to `runs` wait for
-- it (about a second per million runs here); claims of ready runs do not read it.
ALTER TABLE tasks ADD COLUMN retain_seconds double precision
    CHECK (retain_seconds IS NULL OR retain_seconds > 0);
CREATE INDEX runs_expirable ON runs (namespace, task, finished_at)
    WHERE finished_at IS NOT NULL AND status <> 'dead_lettered';
