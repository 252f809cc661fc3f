-- A trigger's W3C traceparent makes the run a child of the caller's span
-- (issue 11): the run keeps the caller's trace id in trace_id (as before) and the
-- caller's span id here, the parent of the run's span. NULL: the run's trace
-- started with it (no traceparent given). Nullable without a default, so adding
-- it rewrites nothing; the previous release never writes it.
ALTER TABLE runs ADD COLUMN parent_span_id text
    CHECK (parent_span_id IS NULL OR parent_span_id ~ '^[0-9a-f]{16}$');

-- Memory use of an attempt as its runner measured it (issue 11): the process's
-- peak resident set, and per step that ran the peak reached by the end of that
-- step. Reported with the attempt's outcome; NULL when the runner did not report
-- (killed, an older runner). Failure patterns and right-sizing hints read them.
ALTER TABLE attempts ADD COLUMN peak_memory_bytes bigint
    CHECK (peak_memory_bytes IS NULL OR peak_memory_bytes >= 0);
ALTER TABLE attempts ADD COLUMN step_peaks jsonb;
-- How long the attempt ran in its runner (start-up excluded): a checkpoint gap is
-- measured from the task's start, not from the claim (a Pod may take minutes to start).
ALTER TABLE attempts ADD COLUMN task_seconds real CHECK (task_seconds IS NULL OR task_seconds >= 0);
-- When the runner fetched its attempt document (written in the background, within
-- moments): the start of an attempt killed before it could report.
ALTER TABLE attempts ADD COLUMN runner_started_at timestamptz;

-- The failure-pattern queries read the attempts that ended within a window: an
-- index on when they ended keeps them bounded by the window, not the history.
CREATE INDEX attempts_finished ON attempts (finished_at) WHERE finished_at IS NOT NULL;

-- Failure patterns the leader found (engine/insights.py): one row per task and
-- pattern while it holds; cleared_at marks when it stopped (kept a while, so the
-- operator can announce the clearing). `announced` is what the operator last
-- told Kubernetes about it (an Event): 'raised' or 'cleared'.
CREATE TABLE task_insights (
    namespace text NOT NULL,
    task text NOT NULL,
    pattern text NOT NULL CHECK (pattern IN ('timeout_loop', 'retry_storm', 'checkpoint_gap',
                                             'memory_growth')),
    since timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    announced text CHECK (announced IN ('raised', 'cleared')),
    details jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (namespace, task, pattern)
);
