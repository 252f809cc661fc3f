-- Durable waits (issue 13): runs that sleep, wait for a token or for child runs,
-- runs delayed to a later time, and runs with a time to live.
--
-- A waiting or delayed run holds no hot row: it is not in run_queue at all, so the
-- claim scan never walks past it and it takes no concurrency slot. It sits in
-- run_waits, a table of its own, until the waker (engine/waits.py) moves it back
-- into run_queue in one statement when it is due. The hot table, the claim
-- functions and their indexes are untouched by this migration.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN (
    'queued', 'running', 'retrying', 'succeeded', 'failed', 'dead_lettered', 'cancelled',
    'delayed', 'waiting', 'expired'));

-- A suspended attempt ended because its task waits; not a failure, not a retry.
ALTER TABLE attempts DROP CONSTRAINT attempts_status_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_status_check CHECK (status IN (
    'running', 'succeeded', 'failed', 'cancelled', 'suspended'));

-- Child runs (ctx.trigger_and_wait) name the run that started them.
ALTER TABLE runs ADD COLUMN parent_run_id uuid;
CREATE INDEX runs_by_parent ON runs (parent_run_id, seq) WHERE parent_run_id IS NOT NULL;

-- Wait tokens: completed from outside (API, CLI, SDK, a webhook with the token's
-- own secret) with a JSON value that the waiting run receives.
CREATE TABLE wait_tokens (
    id uuid PRIMARY KEY,
    namespace text NOT NULL,
    -- The run that created it (ctx.create_token), if any.
    run_id uuid REFERENCES runs (id) ON DELETE CASCADE,
    -- Creating again with the same key in the same scope returns this token: the
    -- scope is the creating run (a retried attempt gets the same token) or the
    -- namespace (API).
    idempotency_scope text NOT NULL,
    idempotency_key text,
    secret text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'completed', 'timed_out')),
    data jsonb,
    timeout_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE UNIQUE INDEX wait_tokens_idempotency ON wait_tokens (idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX wait_tokens_by_namespace ON wait_tokens (namespace, created_at DESC);

-- The waiting set: one row per run that is waiting or delayed.
CREATE TABLE run_waits (
    run_id uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('delay', 'sleep', 'token', 'children')),
    -- The checkpoint key whose data will be the wait's outcome (null for a delay).
    step_key text,
    -- When the waker looks at it: the end of a sleep or delay, a token's timeout,
    -- now() once a token is completed or a child ends; a children wait also has a
    -- recheck time as a safety net. Null: only an outside event wakes it.
    due_at timestamptz,
    -- What a sleep waits until (for the status; due_at may move).
    until timestamptz,
    token_id uuid REFERENCES wait_tokens (id) ON DELETE SET NULL,
    child_ids uuid[],
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The waker's scan: the earliest due first.
CREATE INDEX run_waits_due ON run_waits (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX run_waits_by_token ON run_waits (token_id) WHERE token_id IS NOT NULL;

-- Runs with a time to live: expired by the waker when still not started.
CREATE TABLE run_ttls (
    run_id uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX run_ttls_due ON run_ttls (expires_at);

-- A child that ends wakes its parent's children wait: the waker then checks
-- whether all of them ended. Statement-level, like the event triggers: one
-- UPDATE per statement whatever the number of rows.
CREATE FUNCTION run_waits_child_ended() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
BEGIN
    UPDATE run_waits w SET due_at = now()
    FROM (SELECT DISTINCT n.parent_run_id FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE n.parent_run_id IS NOT NULL AND n.status IS DISTINCT FROM o.status
            AND n.status IN ('succeeded', 'failed', 'dead_lettered', 'cancelled', 'expired'))
         AS ended
    WHERE w.run_id = ended.parent_run_id AND w.kind = 'children';
    RETURN NULL;
END
$$;
CREATE TRIGGER run_waits_child_ended AFTER UPDATE ON runs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION run_waits_child_ended();
