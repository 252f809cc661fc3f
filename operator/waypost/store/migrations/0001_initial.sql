-- waypost schema, version 1.
-- The hot path touches `run_queue` only: one narrow row per active run (queued,
-- retrying or running). Finished runs leave it, so its size tracks the work in
-- flight, not the history; `runs` keeps the full record.

CREATE TABLE tasks (
    namespace   text        NOT NULL,
    name        text        NOT NULL,
    spec        jsonb       NOT NULL,
    -- Derived from spec when stored, so an enqueue is one statement.
    queue       text        NOT NULL,
    memory_bytes bigint     NOT NULL,
    default_priority integer NOT NULL DEFAULT 0,
    generation  bigint      NOT NULL DEFAULT 1,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name)
);

-- One row per queue; claims lock these rows so two dispatchers never exceed a limit.
CREATE TABLE queues (
    name                 text PRIMARY KEY,
    max_concurrency      integer CHECK (max_concurrency IS NULL OR max_concurrency >= 1),
    per_key_concurrency  integer CHECK (per_key_concurrency IS NULL OR per_key_concurrency >= 1),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    id               uuid        PRIMARY KEY,
    seq              bigserial   NOT NULL UNIQUE,
    namespace        text        NOT NULL,
    task             text        NOT NULL,
    queue            text        NOT NULL,
    status           text        NOT NULL CHECK (status IN (
                         'queued', 'running', 'retrying', 'succeeded', 'failed',
                         'dead_lettered', 'cancelled')),
    priority         integer     NOT NULL DEFAULT 0,
    payload          jsonb,
    idempotency_key  text,
    concurrency_key  text,
    -- The task's spec as it was when the run was triggered: a Task edited later
    -- does not change runs already in flight.
    spec             jsonb       NOT NULL,
    memory_bytes     bigint      NOT NULL,
    attempt          integer     NOT NULL DEFAULT 0,
    -- Attempts before this number belong to an earlier retry budget (a requeue
    -- from the dead-letter queue starts a fresh one).
    attempt_base     integer     NOT NULL DEFAULT 0,
    result           jsonb,
    error            jsonb,
    trace_id         text        NOT NULL,
    replay_of        uuid,
    source           text        NOT NULL DEFAULT 'api',
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX runs_idempotency ON runs (namespace, task, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_task ON runs (namespace, task, seq DESC);
CREATE INDEX runs_by_status ON runs (status, seq DESC);
CREATE INDEX runs_dead_lettered ON runs (finished_at DESC) WHERE status = 'dead_lettered';

-- The hot table. `state` is 'ready' (claimable once available_at has passed) or
-- 'running' (claimed; claim_token and lease_expires_at set).
CREATE TABLE run_queue (
    run_id            uuid        PRIMARY KEY,
    seq               bigint      NOT NULL,
    queue             text        NOT NULL,
    concurrency_key   text,
    priority          integer     NOT NULL,
    state             text        NOT NULL CHECK (state IN ('ready', 'running')),
    available_at      timestamptz NOT NULL,
    attempt           integer     NOT NULL DEFAULT 0,
    claim_token       bigint,
    lease_expires_at  timestamptz,
    cancel_requested  boolean     NOT NULL DEFAULT false
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);
-- Claim order: per queue, highest priority first, then oldest.
CREATE INDEX run_queue_ready ON run_queue (queue, priority DESC, seq)
    WHERE state = 'ready';
CREATE INDEX run_queue_running ON run_queue (queue, concurrency_key)
    WHERE state = 'running';
CREATE INDEX run_queue_leases ON run_queue (lease_expires_at)
    WHERE state = 'running';
CREATE UNIQUE INDEX run_queue_claim_token ON run_queue (claim_token)
    WHERE claim_token IS NOT NULL;

-- Every claim draws its fencing token here.
CREATE SEQUENCE claim_tokens;

CREATE TABLE attempts (
    run_id           uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt          integer     NOT NULL,
    claim_token      bigint      NOT NULL UNIQUE,
    status           text        NOT NULL CHECK (status IN (
                         'running', 'succeeded', 'failed', 'cancelled')),
    memory_bytes     bigint      NOT NULL,
    worker           text,
    error            jsonb,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE checkpoints (
    run_id      uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         text        NOT NULL,
    seq         bigserial   NOT NULL,
    attempt     integer     NOT NULL,
    data        jsonb       NOT NULL,
    size_bytes  integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key)
);

CREATE TABLE run_logs (
    run_id     uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq        bigserial   NOT NULL,
    attempt    integer     NOT NULL,
    ts         timestamptz NOT NULL,
    level      text        NOT NULL,
    message    text        NOT NULL,
    fields     jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, seq)
);

-- The leader epoch (the Lease's leaseTransitions), checked by leader-only writes.
CREATE TABLE leadership (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch      bigint      NOT NULL,
    holder     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW dead_letters AS
    SELECT id, namespace, task, queue, attempt, error, payload, created_at, finished_at
    FROM runs WHERE status = 'dead_lettered';

-- Signs per-attempt credentials; made once, shared by every replica.
CREATE TABLE signing_keys (
    id          integer PRIMARY KEY,
    key         bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
