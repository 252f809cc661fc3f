-- NOTIFY: channels and payloads are described once, in waypost/store/notify.py.
--
-- `(SELECT pg_notify(...)) IS NULL AS notified`: pg_notify returns void, which
-- cannot stand in a result row as it is, so `IS NULL` turns it into a boolean
-- whose value means nothing. Written as an uncorrelated scalar subquery it is an
-- InitPlan: Postgres runs it once per statement, and only when a row needs it, so
-- a statement that enqueues a thousand runs sends one NOTIFY (a NOTIFY takes a
-- database-wide lock at commit), and one that inserts nothing sends none.

-- fragment: run_columns
-- The columns of a run record as store.runs reads them, from `runs` (or rows
-- shaped like it) under the alias r.
r.id, r.namespace, r.task, r.queue, r.status, r.priority, r.payload, r.idempotency_key,
r.concurrency_key, r.attempt, r.attempt_base, r.memory_bytes, r.result, r.error,
r.trace_id, r.replay_of, r.source, r.created_at, r.started_at, r.finished_at,
r.updated_at, r.taskrun_name, r.spec_choice, r.spec_generation,
(r.spec -> 'retry' ->> 'maxAttempts')::int AS max_attempts

-- name: enqueue_run
-- Creates a run and its hot queue row in one statement and returns the run as
-- created. Nothing is inserted when the task is unknown or the idempotency key
-- was used before (the caller then looks up which). NOTIFY once per statement
-- wakes the dispatcher.
WITH task AS (
    SELECT t.namespace, t.name, t.spec, t.queue, t.memory_bytes, t.default_priority,
           t.generation, q.id AS queue_id
    FROM tasks t JOIN queues q ON q.namespace = t.namespace AND q.name = t.queue
    WHERE t.namespace = :namespace AND t.name = :task AND t.deleted_at IS NULL
), inserted AS (
    INSERT INTO runs (id, namespace, task, queue, status, priority, payload,
                      idempotency_key, concurrency_key, spec, memory_bytes, trace_id,
                      source, replay_of, taskrun_name, spec_generation)
    SELECT :run_id, t.namespace, t.name, t.queue, 'queued',
           coalesce(:priority, t.default_priority), :payload::jsonb, :idempotency_key,
           :concurrency_key, t.spec, t.memory_bytes, :trace_id, :source, :replay_of,
           :taskrun_name, t.generation
    FROM task t
    ON CONFLICT (namespace, task, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING
    RETURNING *
), queued AS (
    INSERT INTO run_queue (run_id, seq, queue_id, concurrency_key, priority, state,
                           available_at)
    SELECT i.id, i.seq, t.queue_id, i.concurrency_key, i.priority, 'ready', now()
    FROM inserted i CROSS JOIN task t
    RETURNING run_id
)
SELECT {run_columns},
       (SELECT pg_notify('waypost_ready', '')) IS NULL AS notified
FROM inserted r JOIN queued q ON q.run_id = r.id;

-- name: enqueue_runs_bulk
-- Bulk trigger: many runs of one task in one statement (arrays of equal length).
WITH task AS (
    SELECT t.namespace, t.name, t.spec, t.queue, t.memory_bytes, t.default_priority,
           t.generation, q.id AS queue_id
    FROM tasks t JOIN queues q ON q.namespace = t.namespace AND q.name = t.queue
    WHERE t.namespace = :namespace AND t.name = :task AND t.deleted_at IS NULL
), input AS (
    SELECT * FROM unnest(:run_ids::uuid[], :priorities::int[], :payloads::jsonb[],
                         :idempotency_keys::text[], :concurrency_keys::text[],
                         :trace_ids::text[])
        AS i(id, priority, payload, idempotency_key, concurrency_key, trace_id)
), inserted AS (
    INSERT INTO runs (id, namespace, task, queue, status, priority, payload,
                      idempotency_key, concurrency_key, spec, memory_bytes, trace_id, source,
                      spec_generation)
    SELECT i.id, t.namespace, t.name, t.queue, 'queued', coalesce(i.priority, t.default_priority),
           i.payload, i.idempotency_key, i.concurrency_key, t.spec, t.memory_bytes, i.trace_id,
           :source, t.generation
    FROM input i CROSS JOIN task t
    ON CONFLICT (namespace, task, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING
    RETURNING id, seq, concurrency_key, priority
), queued AS (
    INSERT INTO run_queue (run_id, seq, queue_id, concurrency_key, priority, state,
                           available_at)
    SELECT i.id, i.seq, t.queue_id, i.concurrency_key, i.priority, 'ready', now()
    FROM inserted i CROSS JOIN task t
    RETURNING run_id
)
SELECT count(*) AS inserted, (SELECT pg_notify('waypost_ready', '')) IS NULL AS notified
FROM queued;

-- name: set_parent_span
-- The caller's span of a run triggered with a traceparent, and the caller's sampled
-- flag (only those: enqueue_run stays the previous release's statement).
UPDATE runs SET parent_span_id = :parent_span_id, parent_sampled = :parent_sampled
WHERE id = :run_id;

-- name: find_run_by_idempotency_key
-- The run that holds an idempotency key, and whether it was triggered with the same
-- payload (jsonb equality: key order and number spelling do not matter).
SELECT id, payload = :payload::jsonb AS same_payload, priority, concurrency_key
FROM runs
WHERE namespace = :namespace AND task = :task AND idempotency_key = :idempotency_key;

-- name: claim_runs
-- Acknowledge a batch and claim the next in one call (migration 0005 explains).
-- The spec comes back as JSON text: the dispatcher parses each distinct spec once.
SELECT acked, run_id, attempt, claim_token, lease_expires_at, namespace, task,
       spec::text AS spec_json, memory_bytes, trace_id, attempt_base, idempotency_key,
       taskrun_name
FROM claim_runs(:ack_run_ids::uuid[], :ack_tokens::bigint[], :ack_results::jsonb[], :limit,
                :lease_seconds, :worker, :leader_epoch);

-- name: current_attempt
-- The run behind a credential, if that attempt is still the current one.
SELECT q.run_id, q.attempt, q.claim_token, q.cancel_requested, r.namespace, r.task, r.spec,
       r.payload, r.memory_bytes, r.trace_id, r.parent_sampled, r.idempotency_key,
       r.attempt_base
FROM run_queue q JOIN runs r ON r.id = q.run_id
WHERE q.run_id = :run_id AND q.claim_token = :claim_token AND q.state = 'running';

-- name: heartbeat
-- Extends the lease of the current attempt; no row means it was superseded. Once
-- the run's cancellation was requested, the lease is left where cancel_run put it
-- (at the end of the grace period), and the answer tells the runner to stop.
UPDATE run_queue
SET lease_expires_at = CASE WHEN cancel_requested THEN lease_expires_at
                            ELSE now() + make_interval(secs => :lease_seconds) END
WHERE run_id = :run_id AND claim_token = :claim_token AND state = 'running'
RETURNING cancel_requested;

-- name: complete_attempts
-- Success of many attempts in one statement, each fenced on its own token: the hot row
-- leaves run_queue, the run records its result, the attempt is closed.
SELECT run_id
FROM complete_attempts(:run_ids::uuid[], :claim_tokens::bigint[], :results::jsonb[]) AS run_id;

-- name: retry_attempt
-- Failure with attempts left: back to ready after the backoff of :delay_seconds,
-- with the memory limit :memory_bytes for the next attempt. NOTIFY carries the
-- delay so the dispatcher wakes when the run becomes claimable. A lost attempt
-- (:lost_after not null) fails only if its lease is still over by that much: the
-- row lock makes a heartbeat either land first (and keep it) or find it gone.
WITH requeued AS (
    UPDATE run_queue
    SET state = 'ready', claim_token = NULL, lease_expires_at = NULL,
        available_at = now() + make_interval(secs => :delay_seconds)
    WHERE run_id = :run_id AND claim_token = :claim_token AND state = 'running'
      AND (:lost_after::float8 IS NULL
           OR lease_expires_at < now() - make_interval(secs => :lost_after::float8))
    RETURNING run_id, attempt
), run AS (
    UPDATE runs SET status = 'retrying', error = :error::jsonb, memory_bytes = :memory_bytes,
                    updated_at = now()
    FROM requeued f WHERE runs.id = f.run_id
), attempt AS (
    UPDATE attempts SET status = 'failed', error = :error::jsonb, finished_at = now()
    FROM requeued f WHERE attempts.run_id = f.run_id AND attempts.attempt = f.attempt
)
SELECT run_id, pg_notify('waypost_ready', :delay_seconds::text) IS NULL AS notified
FROM requeued;

-- name: hand_over_attempt
-- The engine shut down before the attempt finished (it stopped the worker), or the
-- backend could not start it because its control plane did not answer: the run is
-- ready again after :delay_seconds (0 at shutdown) and resumes from its last
-- checkpoint. attempt_base moves up with it, so the interrupted attempt does not
-- count against the retry budget: neither is the task's failure.
WITH requeued AS (
    UPDATE run_queue
    SET state = 'ready', claim_token = NULL, lease_expires_at = NULL,
        available_at = now() + make_interval(secs => :delay_seconds)
    WHERE run_id = :run_id AND claim_token = :claim_token AND state = 'running'
    RETURNING run_id, attempt
), run AS (
    UPDATE runs SET status = 'retrying', error = :error::jsonb,
                    attempt_base = attempt_base + 1, updated_at = now()
    FROM requeued f WHERE runs.id = f.run_id
), attempt AS (
    UPDATE attempts SET status = 'failed', error = :error::jsonb, finished_at = now()
    FROM requeued f WHERE attempts.run_id = f.run_id AND attempts.attempt = f.attempt
)
SELECT run_id, pg_notify('waypost_ready', :delay_seconds::text) IS NULL AS notified
FROM requeued;

-- name: finish_failed_attempt
-- Failure without a retry: the run ends as :status ('failed' or 'dead_lettered'); a
-- lost attempt only as retry_attempt says.
WITH finished AS (
    DELETE FROM run_queue
    WHERE run_id = :run_id AND claim_token = :claim_token AND state = 'running'
      AND (:lost_after::float8 IS NULL
           OR lease_expires_at < now() - make_interval(secs => :lost_after::float8))
    RETURNING run_id, attempt
), run AS (
    UPDATE runs SET status = :status, error = :error::jsonb, finished_at = now(),
                    updated_at = now()
    FROM finished f WHERE runs.id = f.run_id
), attempt AS (
    UPDATE attempts SET status = 'failed', error = :error::jsonb, finished_at = now()
    FROM finished f WHERE attempts.run_id = f.run_id AND attempts.attempt = f.attempt
)
SELECT run_id FROM finished;

-- name: expired_attempts
-- Running attempts whose lease ran out: their heartbeats stopped, or the grace
-- period of their cancellation is over. A heartbeat lease gets :latency seconds
-- more (one beat in flight on a busy machine) before its attempt counts as lost.
SELECT run_id, claim_token, cancel_requested FROM run_queue
WHERE state = 'running'
  AND lease_expires_at < now() - CASE WHEN cancel_requested THEN interval '0'
                                      ELSE make_interval(secs => :latency) END
ORDER BY lease_expires_at
LIMIT :limit;

-- name: cancel_run
-- Cancels an active run. A waiting one (queued, retrying) ends `cancelled` at
-- once and leaves the hot table. A running one gets the request: the runner
-- learns of it from its next heartbeat and stops its task; its lease is cut to
-- the grace period (the Task's spec.cancellation.gracePeriodSeconds), after
-- which the reaper kills the worker (expired_attempts). Either way the run
-- ends in finish_cancelled_attempt, fenced on its token, so exactly once.
WITH target AS (
    SELECT q.run_id, q.state,
           coalesce((r.spec #>> '{cancellation,gracePeriodSeconds}')::float8,
                    :default_grace_seconds) AS grace
    FROM run_queue q JOIN runs r ON r.id = q.run_id
    WHERE q.run_id = :run_id AND r.status IN ('queued', 'running', 'retrying')
    FOR UPDATE OF q
), requested AS (
    UPDATE run_queue q
    SET cancel_requested = true,
        -- The lease becomes the deadline of the grace period (a repeated request
        -- keeps the first deadline); heartbeats no longer extend it.
        lease_expires_at = CASE WHEN q.cancel_requested THEN q.lease_expires_at
                                ELSE now() + make_interval(secs => t.grace) END
    FROM target t WHERE q.run_id = t.run_id AND t.state = 'running'
    RETURNING q.run_id
), removed AS (
    DELETE FROM run_queue q USING target t WHERE q.run_id = t.run_id AND t.state = 'ready'
    RETURNING q.run_id
), run AS (
    -- The reason is kept in error even while the run still runs: the final
    -- message starts with it.
    UPDATE runs
    SET status = CASE WHEN runs.id IN (SELECT run_id FROM removed) THEN 'cancelled'
                      ELSE runs.status END,
        finished_at = CASE WHEN runs.id IN (SELECT run_id FROM removed) THEN now() END,
        updated_at = now(),
        error = jsonb_build_object('type', 'cancelled', 'message', :reason::text)
    FROM target t WHERE runs.id = t.run_id
)
SELECT t.run_id, t.state, t.grace,
       -- notify.py: the leader's dispatcher reaps the attempt when the grace runs out.
       CASE WHEN t.state = 'running'
            THEN (SELECT pg_notify('waypost_cancel', t.grace::text)) IS NULL END AS notified
FROM target t;

-- name: finish_cancelled_attempt
-- The attempt of a run whose cancellation was requested ended: its runner
-- reported that the task stopped, its worker exited, or the grace period ran
-- out. The run ends `cancelled`; fenced on the token and the request, so once.
WITH finished AS (
    DELETE FROM run_queue
    WHERE run_id = :run_id AND claim_token = :claim_token AND state = 'running'
      AND cancel_requested
    RETURNING run_id, attempt
), run AS (
    UPDATE runs
    SET status = 'cancelled', finished_at = now(), updated_at = now(),
        error = jsonb_build_object(
            'type', 'cancelled',
            'message', coalesce(CASE WHEN runs.error ->> 'type' = 'cancelled'
                                     THEN runs.error ->> 'message' END, 'cancelled')
                       || ': ' || :how::text)
    FROM finished f WHERE runs.id = f.run_id
), attempt AS (
    UPDATE attempts
    SET status = 'cancelled', finished_at = now(),
        error = jsonb_build_object('type', 'cancelled', 'message', :how::text)
    FROM finished f WHERE attempts.run_id = f.run_id AND attempts.attempt = f.attempt
)
SELECT run_id FROM finished;

-- name: cancel_task_runs
-- A deleted Task: its queued and retrying runs are cancelled (running ones finish).
WITH victims AS (
    SELECT q.run_id FROM run_queue q JOIN runs r ON r.id = q.run_id
    WHERE r.namespace = :namespace AND r.task = :task AND q.state = 'ready'
    FOR UPDATE OF q SKIP LOCKED
), removed AS (
    DELETE FROM run_queue q USING victims v WHERE q.run_id = v.run_id RETURNING q.run_id
)
UPDATE runs SET status = 'cancelled', finished_at = now(), updated_at = now(),
                error = jsonb_build_object('type', 'cancelled', 'message', 'task deleted')
FROM removed WHERE runs.id = removed.run_id
RETURNING runs.id;

-- name: bump_run
-- Moves a waiting run to the front of its queue: one above the highest priority there.
WITH target AS (
    SELECT run_id, queue_id FROM run_queue
    WHERE run_id = :run_id AND state = 'ready' FOR UPDATE
), top AS (
    SELECT coalesce(max(q.priority), 0) + 1 AS priority
    FROM run_queue q JOIN target t ON q.queue_id = t.queue_id WHERE q.state = 'ready'
), bumped AS (
    UPDATE run_queue q SET priority = top.priority, available_at = least(q.available_at, now())
    FROM target, top WHERE q.run_id = target.run_id
    RETURNING q.run_id, q.priority
)
UPDATE runs SET priority = b.priority, updated_at = now()
FROM bumped b WHERE runs.id = b.run_id
RETURNING runs.id, runs.priority;

-- name: requeue_run
-- A dead-lettered (or failed) run gets a fresh retry budget and resumes after its
-- last checkpoint; its earlier attempts and checkpoints are kept. :spec_choice
-- picks the spec of the next attempts: 'current' is the Task's spec now (image,
-- limits, retry policy as deployed since), 'original' the spec stored when the
-- run was triggered. The first requeue keeps the trigger-time spec, memory limit
-- and generation in `original`, so 'original' finds them after a 'current' (the
-- trigger-time memory limit is the first attempt's: retries after an OOM kill
-- raise the run's memory_bytes). The
-- run waits in its Task's queue (its own recorded one once the Task is gone). No
-- row back: not requeueable, or 'current' and the Task no longer exists.
WITH target AS (
    SELECT r.id, t.spec AS task_spec, t.memory_bytes AS task_memory_bytes,
           t.generation AS task_generation, q.name AS queue, q.id AS queue_id,
           coalesce((r.original ->> 'memory_bytes')::bigint,
                    (SELECT a.memory_bytes FROM attempts a WHERE a.run_id = r.id
                     ORDER BY a.attempt LIMIT 1),
                    r.memory_bytes) AS trigger_memory_bytes
    FROM runs r
    LEFT JOIN tasks t
           ON t.namespace = r.namespace AND t.name = r.task AND t.deleted_at IS NULL
    JOIN queues q ON q.namespace = r.namespace AND q.name = coalesce(t.queue, r.queue)
    WHERE r.id = :run_id AND r.status IN ('dead_lettered', 'failed')
      AND (:spec_choice::text = 'original' OR t.name IS NOT NULL)
    FOR UPDATE OF r
), run AS (
    UPDATE runs r
    SET status = 'queued', attempt_base = r.attempt, error = NULL, result = NULL,
        finished_at = NULL, updated_at = now(), queue = x.queue,
        spec_choice = :spec_choice,
        original = coalesce(r.original, jsonb_build_object(
            'spec', r.spec, 'memory_bytes', x.trigger_memory_bytes,
            'generation', r.spec_generation)),
        spec = CASE WHEN :spec_choice = 'current' THEN x.task_spec
                    ELSE coalesce(r.original -> 'spec', r.spec) END,
        memory_bytes = CASE WHEN :spec_choice = 'current' THEN x.task_memory_bytes
                            ELSE x.trigger_memory_bytes END,
        spec_generation = CASE WHEN :spec_choice = 'current' THEN x.task_generation
                               WHEN r.original IS NULL THEN r.spec_generation
                               ELSE (r.original ->> 'generation')::bigint END
    FROM target x WHERE r.id = x.id
    RETURNING r.id, r.seq, x.queue_id, r.concurrency_key, r.priority, r.attempt
), queued AS (
    INSERT INTO run_queue (run_id, seq, queue_id, concurrency_key, priority, state,
                           available_at, attempt)
    SELECT id, seq, queue_id, concurrency_key, priority, 'ready', now(), attempt FROM run
    RETURNING run_id
)
SELECT run_id, (SELECT pg_notify('waypost_ready', '')) IS NULL AS notified FROM queued;

-- name: get_run
-- parent_run_id (migration 0017) is read here and in the listings, not in the shared
-- columns, so that the statements of the trigger path run on an older schema too.
SELECT {run_columns}, r.parent_run_id FROM runs r WHERE r.id = :run_id;

-- name: list_runs
-- Newest first; :before_seq is a keyset cursor (the seq of the last row of the
-- previous page). Each filter applies only when given: :created_after and
-- :created_before bound created_at; :search is a prefix of the run id or of the
-- idempotency key (starts_with, so a user's % or _ is matched literally);
-- :id_low/:id_high bound the ids that start with a prefix (short run ids), a
-- primary-key range.
SELECT {run_columns}, r.seq, r.parent_run_id
FROM runs r
WHERE (:namespace::text IS NULL OR r.namespace = :namespace)
  AND (:task::text IS NULL OR r.task = :task)
  AND (:statuses::text[] IS NULL OR r.status = ANY(:statuses::text[]))
  AND (:before_seq::bigint IS NULL OR r.seq < :before_seq)
  AND (:created_after::timestamptz IS NULL OR r.created_at >= :created_after)
  AND (:created_before::timestamptz IS NULL OR r.created_at < :created_before)
  AND (:search::text IS NULL OR starts_with(r.id::text, lower(:search))
       OR starts_with(r.idempotency_key, :search))
  AND (:id_low::uuid IS NULL OR r.id BETWEEN :id_low AND :id_high)
ORDER BY r.seq DESC
LIMIT :limit;

-- name: count_runs
-- How many runs list_runs would page through ("showing 20 of N" in the CLI): the
-- same filters, without its limit and cursor.
SELECT count(*) FROM runs r
WHERE (:namespace::text IS NULL OR r.namespace = :namespace)
  AND (:task::text IS NULL OR r.task = :task)
  AND (:statuses::text[] IS NULL OR r.status = ANY(:statuses::text[]))
  AND (:created_after::timestamptz IS NULL OR r.created_at >= :created_after)
  AND (:created_before::timestamptz IS NULL OR r.created_at < :created_before)
  AND (:search::text IS NULL OR starts_with(r.id::text, lower(:search))
       OR starts_with(r.idempotency_key, :search))
  AND (:id_low::uuid IS NULL OR r.id BETWEEN :id_low AND :id_high);

-- name: list_attempts
SELECT attempt, claim_token, status, memory_bytes, worker, error, started_at, finished_at
FROM attempts WHERE run_id = :run_id ORDER BY attempt;

-- name: count_running
-- Running attempts per queue (namespace and name) and key, as the database sees
-- them (tests).
SELECT q.namespace, q.name AS queue, h.concurrency_key, count(*) AS running
FROM run_queue h JOIN queues q ON q.id = h.queue_id
WHERE h.state = 'running'
GROUP BY q.namespace, q.name, h.concurrency_key;

-- name: queue_depths
-- Ready and running runs per queue (namespace and name), for metrics. Every known
-- queue is reported, 0 when it holds no run: a series that vanished whenever a queue
-- emptied would leave gaps (Prometheus marks it stale) and "No data" on dashboards.
SELECT q.namespace, q.name AS queue, coalesce(h.ready, 0) AS ready,
       coalesce(h.running, 0) AS running
FROM queues q
LEFT JOIN (
    SELECT queue_id, count(*) FILTER (WHERE state = 'ready') AS ready,
           count(*) FILTER (WHERE state = 'running') AS running
    FROM run_queue GROUP BY queue_id
) h ON h.queue_id = q.id;

-- name: status_counts
SELECT status, count(*) AS n FROM runs GROUP BY status;

-- name: taskrun_runs_changed
-- Runs of TaskRun objects updated since :since, oldest change first: the operator
-- mirrors them into TaskRun status. The latest checkpoint key rides along.
SELECT {run_columns},
       (SELECT c.key FROM checkpoints c WHERE c.run_id = r.id ORDER BY c.seq DESC LIMIT 1)
           AS last_checkpoint
FROM runs r
WHERE r.taskrun_name IS NOT NULL AND r.updated_at > :since
ORDER BY r.updated_at
LIMIT :limit;

-- name: scheduled_runs_without_taskrun
-- Runs fired by schedules that no TaskRun object stands for yet, oldest first.
SELECT id, namespace, task, payload, idempotency_key, created_at
FROM runs
WHERE source = 'schedule' AND taskrun_name IS NULL
ORDER BY created_at
LIMIT :limit;

-- name: link_taskrun
-- Ties a run to the TaskRun object made for it (once).
UPDATE runs SET taskrun_name = :taskrun_name, updated_at = now()
WHERE id = :run_id AND taskrun_name IS NULL
RETURNING id;

-- name: task_failure_rates
-- Per task, the runs that finished since :since and how many of them failed (failed or
-- dead-lettered): the tasks page's failure rate over the last hour.
SELECT namespace, task,
       count(*) AS finished,
       count(*) FILTER (WHERE status IN ('failed', 'dead_lettered')) AS failed
FROM runs
WHERE finished_at >= :since
GROUP BY namespace, task;

-- fragment: bulk_filter
-- The runs a bulk action takes: in :statuses, of :namespace/:task, created in
-- [:since, :until), whose last error is of :error_type, except those whose
-- idempotency key starts with :exclude_key_prefix (a bulk replay's own replays).
(:namespace::text IS NULL OR namespace = :namespace)
  AND (:task::text IS NULL OR task = :task)
  AND status = ANY(:statuses::text[])
  AND (:since::timestamptz IS NULL OR created_at >= :since)
  AND (:until::timestamptz IS NULL OR created_at < :until)
  AND (:error_type::text IS NULL OR error ->> 'type' = :error_type)
  AND (:exclude_key_prefix::text IS NULL OR idempotency_key IS NULL
       OR NOT starts_with(idempotency_key, :exclude_key_prefix))

-- name: bulk_candidates
-- A batch of a bulk action (bulk_filter), newest first after the keyset cursor
-- :before_seq, at most :limit.
SELECT id, seq FROM runs
WHERE {bulk_filter}
  AND (:before_seq::bigint IS NULL OR seq < :before_seq)
ORDER BY seq DESC
LIMIT :limit;

-- name: bulk_count
-- How many runs a bulk action's filter (bulk_filter) still matches.
SELECT count(*) FROM runs WHERE {bulk_filter};

-- name: list_children
-- The child runs of a run, oldest first.
SELECT {run_columns}, r.parent_run_id FROM runs r WHERE r.parent_run_id = :run_id
ORDER BY r.seq LIMIT :limit;
