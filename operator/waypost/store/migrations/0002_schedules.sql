-- waypost schema, version 2: cron schedules of Tasks.
-- One row per schedule of a Task's spec.schedules, kept in step with the spec by
-- the schedule sync (engine/scheduler.py). The scheduler loop fires rows whose
-- next_fire_at has passed: it locks them (FOR UPDATE SKIP LOCKED), enqueues the
-- firings with idempotency keys schedule:<name>:<UTC fire time> and advances
-- next_fire_at in one transaction. next_fire_at is NULL while the schedule is
-- malformed (last_error says why).

CREATE TABLE schedules (
    namespace      text        NOT NULL,
    task           text        NOT NULL,
    name           text        NOT NULL,
    cron           text        NOT NULL,
    timezone       text        NOT NULL DEFAULT 'UTC',
    payload        jsonb,
    missed_runs    text        NOT NULL DEFAULT 'Skip'
                   CHECK (missed_runs IN ('Skip', 'Catchup')),
    catchup_limit  integer     NOT NULL DEFAULT 10 CHECK (catchup_limit >= 1),
    suspended      boolean     NOT NULL DEFAULT false,
    next_fire_at   timestamptz,
    last_fire_at   timestamptz,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, task, name),
    FOREIGN KEY (namespace, task) REFERENCES tasks (namespace, name) ON DELETE CASCADE
);
-- What the scheduler polls: active schedules by next fire time.
CREATE INDEX schedules_due ON schedules (next_fire_at)
    WHERE NOT suspended AND next_fire_at IS NOT NULL;
