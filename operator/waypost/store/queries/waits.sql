-- Durable waits, delayed runs, TTLs, wait tokens, child runs and batch triggers
-- (migration 0017 describes the tables). A waiting or delayed run has no row in
-- run_queue; these statements move runs between run_waits and run_queue.

-- fragment: final_statuses
('succeeded', 'failed', 'dead_lettered', 'cancelled', 'expired')

-- name: enqueue_runs_batch
-- Many runs of one task in one statement (arrays of equal length, one element per
-- item, in order). A run whose :run_ats element lies in the future is `delayed` and
-- waits in run_waits; the others are queued in run_queue. An :expires_ats element
-- gives the run a time to live. Items whose idempotency key is taken (by an older
-- run or an earlier item of the same batch) insert nothing; the caller looks their
-- runs up. NOTIFY once, and only when something became claimable.
WITH task AS (
    SELECT t.namespace, t.name, t.spec, t.queue, t.memory_bytes, t.default_priority,
           t.generation, q.id AS queue_id
    FROM tasks t JOIN queues q ON q.namespace = t.namespace AND q.name = t.queue
    WHERE t.namespace = :namespace AND t.name = :task AND t.deleted_at IS NULL
), input AS (
    SELECT * FROM unnest(:run_ids::uuid[], :priorities::int[], :payloads::jsonb[],
                         :idempotency_keys::text[], :concurrency_keys::text[],
                         :trace_ids::text[], :run_ats::timestamptz[],
                         :expires_ats::timestamptz[])
        WITH ORDINALITY
        AS i(id, priority, payload, idempotency_key, concurrency_key, trace_id, run_at,
             expires_at, ord)
), inserted AS (
    INSERT INTO runs (id, namespace, task, queue, status, priority, payload,
                      idempotency_key, concurrency_key, spec, memory_bytes, trace_id, source,
                      spec_generation, parent_run_id, taskrun_name)
    SELECT i.id, t.namespace, t.name, t.queue,
           CASE WHEN i.run_at > now() THEN 'delayed' ELSE 'queued' END,
           coalesce(i.priority, t.default_priority), i.payload, i.idempotency_key,
           i.concurrency_key, t.spec, t.memory_bytes, i.trace_id, :source, t.generation,
           :parent_run_id, :taskrun_name
    FROM input i CROSS JOIN task t
    ORDER BY i.ord
    ON CONFLICT (namespace, task, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING
    RETURNING id, seq, status, concurrency_key, priority
), queued AS (
    INSERT INTO run_queue (run_id, seq, queue_id, concurrency_key, priority, state,
                           available_at)
    SELECT i.id, i.seq, t.queue_id, i.concurrency_key, i.priority, 'ready', now()
    FROM inserted i CROSS JOIN task t
    WHERE i.status = 'queued'
    RETURNING run_id
), delayed AS (
    INSERT INTO run_waits (run_id, kind, due_at, until)
    SELECT i.id, 'delay', x.run_at, x.run_at
    FROM inserted i JOIN input x ON x.id = i.id
    WHERE i.status = 'delayed'
), ttls AS (
    INSERT INTO run_ttls (run_id, expires_at)
    SELECT i.id, x.expires_at FROM inserted i JOIN input x ON x.id = i.id
    WHERE x.expires_at IS NOT NULL
)
SELECT i.id, i.status,
       CASE WHEN EXISTS (SELECT 1 FROM queued)
            THEN (SELECT pg_notify('waypost_ready', '')) IS NULL END AS notified
FROM inserted i;

-- name: runs_by_idempotency_keys
-- The runs that hold any of :idempotency_keys for one task.
SELECT idempotency_key, id, status FROM runs
WHERE namespace = :namespace AND task = :task AND idempotency_key = ANY(:idempotency_keys::text[]);

-- name: suspend_attempt
-- The current attempt's task waits (a sleep, a token, child runs): the attempt ends
-- `suspended`, the hot row leaves run_queue (the concurrency slot is free), the run
-- is `waiting` in run_waits. Fenced on the claim token, and refused once the run's
-- cancellation was requested. A suspension is not a retry: attempt_base moves with
-- the attempt number, so the retry budget is what it was.
WITH finished AS (
    DELETE FROM run_queue
    WHERE run_id = :run_id AND claim_token = :claim_token AND state = 'running'
      AND NOT cancel_requested
    RETURNING run_id, attempt
), waiting AS (
    INSERT INTO run_waits (run_id, kind, step_key, due_at, until, token_id, child_ids)
    SELECT f.run_id, :kind, :step_key, :due_at, :until, :token_id, :child_ids::uuid[]
    FROM finished f
), run AS (
    UPDATE runs SET status = 'waiting', attempt_base = attempt_base + 1, updated_at = now()
    FROM finished f WHERE runs.id = f.run_id
), attempt AS (
    UPDATE attempts SET status = 'suspended', finished_at = now()
    FROM finished f WHERE attempts.run_id = f.run_id AND attempts.attempt = f.attempt
)
SELECT run_id FROM finished;

-- name: waker_without_jit
-- The waker's statements run in a transaction of their own without JIT: an outcome
-- CTE priced for token and children waits lifts a 1,000-row pass over
-- jit_above_cost, and compiling it took 260 ms of a 1 s statement (bench.waits).
SET LOCAL jit = off;

-- name: wake_due_runs
-- The waker's pass: up to :limit waits that are due, earliest first, in one
-- statement. A due wait whose outcome is known ends: its outcome becomes the
-- checkpoint under its step key (a sleep's end, a token's data or its timeout, the
-- children's results), the run is queued again in run_queue and its next attempt
-- passes through the wait. A children wait with children still active goes back
-- to sleep until the next child ends, and a token wait whose token is still
-- pending until it is completed or times out; both are looked at again after
-- :recheck_seconds, a safety net. A token whose timeout came is marked timed_out. SKIP LOCKED: a token being
-- completed right now holds its wait's row, and is woken by the next pass.
-- Leader only: with :leader_epoch, nothing is woken unless that epoch is still the
-- current one (the shared lock on the leadership row holds a newer leader's
-- record_leader_epoch back until this statement commits, as claims do).
WITH due AS (
    SELECT w.run_id, w.kind, w.step_key, w.until, w.token_id, w.child_ids
    FROM run_waits w
    WHERE w.due_at <= now()
      AND (:leader_epoch::bigint IS NULL
           OR EXISTS (SELECT 1 FROM leadership l WHERE l.epoch = :leader_epoch FOR SHARE))
    ORDER BY w.due_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), outcome AS (
    SELECT d.run_id, d.kind, d.step_key, d.token_id,
           CASE d.kind
               WHEN 'sleep' THEN jsonb_build_object('wait', 'sleep', 'until', d.until)
               WHEN 'token' THEN (
                   SELECT CASE WHEN t.status = 'completed'
                               THEN jsonb_build_object('wait', 'token', 'tokenId', t.id,
                                                       'ok', true, 'data', t.data)
                               ELSE jsonb_build_object('wait', 'token', 'tokenId', d.token_id,
                                                       'ok', false, 'timedOut', true) END
                   FROM wait_tokens t WHERE t.id = d.token_id)
               WHEN 'children' THEN jsonb_build_object('wait', 'children', 'runs', (
                   SELECT coalesce(jsonb_agg(jsonb_build_object(
                              'id', c.id, 'task', c.task, 'status', c.status,
                              'result', c.result, 'error', c.error) ORDER BY u.ord), '[]')
                   FROM unnest(d.child_ids) WITH ORDINALITY AS u(id, ord)
                   JOIN runs c ON c.id = u.id))
           END AS data,
           CASE d.kind
               WHEN 'children' THEN NOT EXISTS (
                   SELECT 1 FROM unnest(d.child_ids) AS u(id) JOIN runs c ON c.id = u.id
                   WHERE c.status NOT IN {final_statuses})
               WHEN 'token' THEN coalesce((
                   SELECT t.status <> 'pending' OR t.timeout_at <= now()
                   FROM wait_tokens t WHERE t.id = d.token_id), true)
               ELSE true
           END AS ready,
           (SELECT t.timeout_at FROM wait_tokens t WHERE t.id = d.token_id) AS timeout_at
    FROM due d
), rechecked AS (
    UPDATE run_waits w
    SET due_at = least(o.timeout_at, now() + make_interval(secs => :recheck_seconds))
    FROM outcome o WHERE w.run_id = o.run_id AND NOT o.ready
    RETURNING w.run_id
), removed AS (
    DELETE FROM run_waits w USING outcome o WHERE w.run_id = o.run_id AND o.ready
    RETURNING w.run_id
), timed_out AS (
    UPDATE wait_tokens t SET status = 'timed_out', completed_at = now()
    FROM outcome o
    WHERE o.ready AND o.kind = 'token' AND t.id = o.token_id AND t.status = 'pending'
), written AS (
    INSERT INTO checkpoints (run_id, key, attempt, data, size_bytes)
    SELECT o.run_id, o.step_key, r.attempt, o.data, octet_length(o.data::text)
    FROM outcome o JOIN runs r ON r.id = o.run_id
    WHERE o.ready AND o.step_key IS NOT NULL AND o.data IS NOT NULL
    ON CONFLICT (run_id, key) DO UPDATE
        SET data = excluded.data, attempt = excluded.attempt, size_bytes = excluded.size_bytes,
            seq = DEFAULT, created_at = now()
), run AS (
    UPDATE runs r SET status = 'queued', updated_at = now()
    FROM outcome o WHERE r.id = o.run_id AND o.ready
    RETURNING r.id, r.seq, r.namespace, r.queue, r.concurrency_key, r.priority, r.attempt
), queued AS (
    INSERT INTO run_queue (run_id, seq, queue_id, concurrency_key, priority, state,
                           available_at, attempt)
    SELECT r.id, r.seq, q.id, r.concurrency_key, r.priority, 'ready', now(), r.attempt
    FROM run r JOIN queues q ON q.namespace = r.namespace AND q.name = r.queue
    RETURNING run_id
)
SELECT (SELECT count(*) FROM queued) AS woken, (SELECT count(*) FROM rechecked) AS rechecked,
       CASE WHEN EXISTS (SELECT 1 FROM queued)
            THEN (SELECT pg_notify('waypost_ready', '')) IS NULL END AS notified;

-- name: expire_runs
-- Runs whose time to live ran out before they started end `expired` and never
-- run: up to :limit, in one statement. The hot row is locked first, as a claim
-- does (SKIP LOCKED: a run being claimed at this moment starts instead); a delayed
-- run leaves run_waits. Every TTL row that is due goes, whatever its run did.
-- Leader only: fenced on :leader_epoch as wake_due_runs is.
WITH due AS (
    SELECT d.run_id FROM run_ttls d WHERE d.expires_at <= now()
      AND (:leader_epoch::bigint IS NULL
           OR EXISTS (SELECT 1 FROM leadership l WHERE l.epoch = :leader_epoch FOR SHARE))
    ORDER BY d.expires_at LIMIT :limit
    FOR UPDATE SKIP LOCKED
), dropped AS (
    DELETE FROM run_ttls d USING due WHERE d.run_id = due.run_id RETURNING d.run_id
), ready AS (
    -- Never started: a retrying or resumed run is past its ttl's reach.
    SELECT q.run_id FROM run_queue q JOIN dropped d ON d.run_id = q.run_id
    JOIN runs r ON r.id = q.run_id AND r.started_at IS NULL
    WHERE q.state = 'ready'
    FOR UPDATE OF q SKIP LOCKED
), delayed AS (
    SELECT w.run_id FROM run_waits w JOIN dropped d ON d.run_id = w.run_id
    WHERE w.kind = 'delay'
    FOR UPDATE OF w SKIP LOCKED
), unqueued AS (
    DELETE FROM run_queue q USING ready r WHERE q.run_id = r.run_id RETURNING q.run_id
), undelayed AS (
    DELETE FROM run_waits w USING delayed d WHERE w.run_id = d.run_id RETURNING w.run_id
)
UPDATE runs r
SET status = 'expired', finished_at = now(), updated_at = now(),
    error = jsonb_build_object('type', 'expired',
                               'message', 'the run did not start within its ttl')
WHERE r.id IN (SELECT run_id FROM unqueued UNION ALL SELECT run_id FROM undelayed)
  AND r.started_at IS NULL
RETURNING r.id;

-- name: next_due
-- When the waker has something to do next: the earliest wait or TTL (null: none).
SELECT least((SELECT min(due_at) FROM run_waits WHERE due_at IS NOT NULL),
             (SELECT min(expires_at) FROM run_ttls)) AS next_due,
       now() AS now;

-- name: reschedule_run
-- A delayed run gets another start time (a time in the past: start now).
UPDATE run_waits SET due_at = :run_at, until = :run_at
WHERE run_id = :run_id AND kind = 'delay'
RETURNING run_id;

-- name: cancel_waiting_run
-- A waiting or delayed run ends `cancelled` at once: it leaves run_waits and has
-- nothing running to stop.
WITH removed AS (
    DELETE FROM run_waits WHERE run_id = :run_id RETURNING run_id
)
UPDATE runs SET status = 'cancelled', finished_at = now(), updated_at = now(),
                error = jsonb_build_object('type', 'cancelled', 'message', :reason::text)
FROM removed WHERE runs.id = removed.run_id AND runs.status IN ('waiting', 'delayed')
RETURNING runs.id;

-- name: active_children
-- The children of a run that have not ended (a cancelled parent cancels them).
SELECT id FROM runs
WHERE parent_run_id = :run_id AND status NOT IN {final_statuses};

-- name: waits_of_runs
-- What each of :run_ids waits for, if it waits.
SELECT w.run_id, w.kind, w.step_key, w.due_at, w.until, w.token_id, w.child_ids,
       t.timeout_at AS token_timeout_at,
       (SELECT count(*) FROM unnest(w.child_ids) AS u(id) JOIN runs c ON c.id = u.id
        WHERE c.status NOT IN {final_statuses}) AS children_active
FROM run_waits w LEFT JOIN wait_tokens t ON t.id = w.token_id
WHERE w.run_id = ANY(:run_ids::uuid[]);

-- name: parents_of_runs
SELECT id, parent_run_id FROM runs WHERE id = ANY(:run_ids::uuid[]) AND parent_run_id IS NOT NULL;

-- name: child_outcomes
-- The children :child_ids as a wait's outcome, in that order, and how many are active.
SELECT u.ord, c.id, c.task, c.status, c.result, c.error
FROM unnest(:child_ids::uuid[]) WITH ORDINALITY AS u(id, ord) JOIN runs c ON c.id = u.id
ORDER BY u.ord;

-- name: create_token
-- A wait token; the same (scope, key) returns the token made first (no row here).
INSERT INTO wait_tokens (id, namespace, run_id, idempotency_scope, idempotency_key, secret,
                         timeout_at)
VALUES (:id, :namespace, :run_id, :idempotency_scope, :idempotency_key, :secret,
        CASE WHEN :timeout_seconds::float8 IS NULL THEN NULL
             ELSE now() + make_interval(secs => :timeout_seconds::float8) END)
ON CONFLICT (idempotency_scope, idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING
RETURNING id;

-- fragment: token_columns
t.id, t.namespace, t.run_id, t.idempotency_key, t.secret,
CASE WHEN t.status = 'pending' AND t.timeout_at <= now() THEN 'timed_out' ELSE t.status END
    AS status,
t.data, t.timeout_at, t.created_at, t.completed_at,
(SELECT array_agg(w.run_id) FROM run_waits w WHERE w.token_id = t.id) AS waiting_runs

-- name: token_by_key
SELECT {token_columns} FROM wait_tokens t
WHERE t.idempotency_scope = :idempotency_scope AND t.idempotency_key = :idempotency_key;

-- name: get_token
SELECT {token_columns} FROM wait_tokens t WHERE t.id = :id;

-- name: list_tokens
-- Newest first; :before is a keyset cursor (created_at, id of the last row).
SELECT {token_columns} FROM wait_tokens t
WHERE (:namespace::text IS NULL OR t.namespace = :namespace)
  AND (:run_id::uuid IS NULL OR t.run_id = :run_id)
  AND (:status::text IS NULL OR
       (CASE WHEN t.status = 'pending' AND t.timeout_at <= now() THEN 'timed_out'
             ELSE t.status END) = :status)
  AND (:before_created::timestamptz IS NULL OR (t.created_at, t.id) < (:before_created, :before_id::uuid))
ORDER BY t.created_at DESC, t.id DESC
LIMIT :limit;

-- name: lock_token
-- A run about to wait on a token holds it while it suspends: a completion that
-- comes meanwhile waits, then (wake_token_waits, a later statement) sees the wait.
SELECT id, CASE WHEN status = 'pending' AND timeout_at <= now() THEN 'timed_out'
                ELSE status END AS status,
       data, timeout_at
FROM wait_tokens WHERE id = :id FOR UPDATE;

-- name: lock_token_waits
-- First step of completing a token: hold the waits on it, so the waker (which
-- skips locked waits) cannot time them out while the completion commits, and a
-- waker already timing them out finishes first (the token is then not pending).
SELECT run_id FROM run_waits WHERE token_id = :id FOR UPDATE;

-- name: complete_token
-- Second step: the token takes its data, once, unless its timeout came.
UPDATE wait_tokens SET status = 'completed', data = :data::jsonb, completed_at = now()
WHERE id = :id AND status = 'pending' AND (timeout_at IS NULL OR timeout_at > now())
RETURNING id;

-- name: wake_token_waits
-- Third step, a statement of its own so that its snapshot includes a wait that
-- committed while the completion waited for the token: its runs become due.
UPDATE run_waits SET due_at = now() WHERE token_id = :id RETURNING run_id;
