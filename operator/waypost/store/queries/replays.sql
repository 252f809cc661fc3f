-- name: replay_source
-- The run to replay, held (FOR SHARE) until the replay commits so that a requeue
-- cannot make it active in between.
SELECT id, namespace, task, queue, status, priority, payload, concurrency_key, spec,
       spec_generation
FROM runs WHERE id = :run_id
FOR SHARE;

-- name: checkpoints_in_order
-- A run's checkpoints in the order they were (last) written, with their data.
SELECT key, data, attempt, size_bytes, created_at FROM checkpoints
WHERE run_id = :run_id ORDER BY seq;

-- name: enqueue_replay_run
-- The new run of a replay: the given spec (the task's current one or the original
-- run's), queued at once in its namespace's queue :queue (made, without limits, when
-- the original spec's queue no longer has a row). With an idempotency key already
-- used, nothing is inserted.
WITH made_queue AS (
    INSERT INTO queues (namespace, name) VALUES (:namespace, :queue)
    ON CONFLICT (namespace, name) DO NOTHING
    RETURNING id
), queue AS (
    SELECT id FROM made_queue
    UNION ALL
    SELECT id FROM queues WHERE namespace = :namespace AND name = :queue
), inserted AS (
    INSERT INTO runs (id, namespace, task, queue, status, priority, payload,
                      idempotency_key, concurrency_key, spec, memory_bytes, trace_id,
                      source, replay_of, taskrun_name, spec_generation)
    VALUES (:run_id, :namespace, :task, :queue, 'queued', :priority, :payload::jsonb,
            :idempotency_key, :concurrency_key, :spec::jsonb, :memory_bytes, :trace_id,
            'replay', :replay_of, :taskrun_name, :spec_generation)
    ON CONFLICT (namespace, task, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING
    RETURNING id, seq, queue, concurrency_key, priority
), queued AS (
    INSERT INTO run_queue (run_id, seq, queue_id, concurrency_key, priority, state,
                           available_at)
    SELECT i.id, i.seq, (SELECT id FROM queue LIMIT 1), i.concurrency_key, i.priority,
           'ready', now()
    FROM inserted i
    RETURNING run_id
)
SELECT run_id FROM queued;

-- name: copy_checkpoints
-- Checkpoints :keys of run :from_run become checkpoints of the replay :to_run, in
-- their original order, as written by attempt 0 (none of the replay's attempts wrote
-- them); the edited ones (:edited_keys, :edited_data, :edited_sizes) are stored
-- instead of the originals.
INSERT INTO checkpoints (run_id, key, attempt, data, size_bytes)
SELECT :to_run, c.key, 0, coalesce(e.data, c.data), coalesce(e.size_bytes, c.size_bytes)
FROM checkpoints c
LEFT JOIN unnest(:edited_keys::text[], :edited_data::jsonb[], :edited_sizes::int[])
    AS e(key, data, size_bytes) ON e.key = c.key
WHERE c.run_id = :from_run AND c.key = ANY(:keys::text[])
ORDER BY c.seq;

-- name: record_replay
-- The audit record of a replay, and a 'replay' event on both runs; wakes the
-- dispatcher for the new run (waypost_ready, see store/notify.py).
WITH audit AS (
    INSERT INTO run_replays (run_id, replay_of, from_checkpoint, spec_source,
                             requested_by, diff)
    VALUES (:run_id, :replay_of, :from_checkpoint, :spec_source, :requested_by,
            :diff::jsonb)
    RETURNING run_id, replay_of, from_checkpoint, spec_source, requested_by, requested_at,
              diff
), events AS (
    INSERT INTO run_events (run_id, kind, data)
    SELECT target, 'replay',
           jsonb_strip_nulls(jsonb_build_object(
               'replayRun', a.run_id, 'replayOf', a.replay_of,
               'fromCheckpoint', a.from_checkpoint, 'spec', a.spec_source,
               'requestedBy', a.requested_by, 'diff', a.diff))
    FROM audit a, unnest(ARRAY[a.replay_of, a.run_id]) AS target
)
SELECT run_id, replay_of, from_checkpoint, spec_source, requested_by, requested_at, diff,
       pg_notify('waypost_ready', '') IS NULL AS notified
FROM audit;

-- name: replay_of_run
-- The audit record of a run that is a replay.
SELECT run_id, replay_of, from_checkpoint, spec_source, requested_by, requested_at, diff
FROM run_replays WHERE run_id = :run_id;

-- name: replays_of_run
-- The replays of a run, oldest first.
SELECT run_id, replay_of, from_checkpoint, spec_source, requested_by, requested_at, diff
FROM run_replays WHERE replay_of = :run_id ORDER BY requested_at, run_id;
