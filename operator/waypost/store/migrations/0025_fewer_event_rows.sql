-- Two of the four event rows a run wrote in a drain said what its neighbour said:
-- the claim wrote `status: running` (runs trigger) and `attempt_started` (attempts
-- trigger); a success wrote `attempt_finished` (attempts trigger) and `status:
-- succeeded` (runs trigger), each pair in one statement of one transaction. Each
-- row cost about 375 bytes of WAL with its two index entries and a foreign-key
-- lock of the run row (issue 15: events were 30% of a run's WAL).
--
-- Now the status row carries its neighbour: `data.attemptStarted` on a change to
-- running, `data.attemptFinished` on a change to succeeded, holding exactly the
-- data the attempt's own row held. The readers (store/events.py for the SSE
-- stream, the UI and `waypost logs -f`; store/telemetry.py for the leader's
-- metrics and spans) give both events back, each with its own cursor:
--   * attempt_started at (tx, id + 1): it came after the running status;
--   * attempt_finished at (tx, id - 1): it came before the succeeded status.
-- That neighbouring id is reserved: the row takes two values of the identity
-- sequence and keeps the lower (running) or the higher (succeeded). A
-- transaction's own values only grow, so no other event of the same transaction
-- can hold the reserved id (another transaction may hold the number, under another
-- tx, a different cursor). Cursors therefore stay unique and in the order the
-- events were written; Last-Event-ID resume stays exact.
--
-- Only the claim (start_claimed) inserts attempts and sets a run running, and only
-- complete_attempts sets an attempt and its run succeeded, each in one statement:
-- an AFTER trigger on runs sees the attempt row of the same statement.
--
-- Rolling upgrade: every writer of these rows is a trigger, replaced here at once,
-- so old and new code write the same rows from this migration on. The previous
-- release's readers show a run's running and succeeded statuses without the
-- attempt_started / success attempt_finished events folded into them, and a leader
-- of the previous release misses those attempts in its metrics (queue wait,
-- successful attempts and their duration), until the upgrade ends. Nothing is
-- lost: the new release reads every event back, including those written while the
-- old one ran. Events written before this migration are read as they are.
CREATE OR REPLACE FUNCTION run_events_run_updated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = waypost, pg_catalog
    SET enable_nestloop = off
AS $$
BEGIN
    INSERT INTO run_events (id, run_id, kind, attempt, data) OVERRIDING SYSTEM VALUE
    SELECT CASE WHEN x.started IS NOT NULL
                THEN least(nextval('run_events_id_seq'), nextval('run_events_id_seq'))
                WHEN x.finished IS NOT NULL
                THEN greatest(nextval('run_events_id_seq'), nextval('run_events_id_seq'))
                ELSE nextval('run_events_id_seq') END,
           n.id, 'status', n.attempt,
           jsonb_strip_nulls(jsonb_build_object(
               'status', n.status, 'previous', o.status,
               'error', CASE WHEN n.error IS NOT NULL THEN
                   jsonb_build_object('type', n.error ->> 'type',
                                      'message', n.error ->> 'message',
                                      'exitCode', n.error -> 'exitCode') END,
               'result', CASE WHEN n.status = 'succeeded' THEN n.result END,
               'attemptStarted', x.started, 'attemptFinished', x.finished))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    LEFT JOIN LATERAL (
        -- What run_events_attempt_inserted and run_events_attempt_updated wrote.
        SELECT CASE WHEN n.status = 'running' THEN jsonb_strip_nulls(jsonb_build_object(
                   'memoryBytes', a.memory_bytes, 'worker', a.worker,
                   'queueWaitMs', (SELECT greatest(0, (extract(epoch FROM a.started_at
                                                               - q.available_at)
                                                       * 1000)::bigint)
                                   FROM run_queue q
                                   WHERE q.run_id = a.run_id AND q.attempt = a.attempt)))
               END AS started,
               CASE WHEN n.status = 'succeeded' AND a.status = 'succeeded' THEN
                   jsonb_strip_nulls(jsonb_build_object(
                       'status', a.status, 'memoryBytes', a.memory_bytes,
                       'durationMs', (extract(epoch FROM a.finished_at - a.started_at)
                                      * 1000)::bigint))
               END AS finished
        FROM attempts a
        WHERE a.run_id = n.id AND a.attempt = n.attempt
          AND n.status IN ('running', 'succeeded')
    ) x ON true
    WHERE n.status IS DISTINCT FROM o.status;
    RETURN NULL;
END
$$;

-- The attempt's start is written by the run's change to running (above).
DROP TRIGGER run_events_attempt_inserted ON attempts;
DROP FUNCTION run_events_attempt_inserted();

-- A successful attempt's end is written by the run's change to succeeded (above).
CREATE OR REPLACE FUNCTION run_events_attempt_updated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = waypost, pg_catalog
    SET enable_nestloop = off
AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.run_id, 'attempt_finished', n.attempt,
           jsonb_strip_nulls(jsonb_build_object(
               'status', n.status, 'memoryBytes', n.memory_bytes,
               'failureType', n.error ->> 'type', 'message', n.error ->> 'message',
               'exitCode', n.error -> 'exitCode',
               'oomKilled', CASE WHEN n.error IS NOT NULL THEN n.error ->> 'type' = 'oom' END,
               'durationMs', (extract(epoch FROM n.finished_at - n.started_at) * 1000)::bigint))
    FROM new_rows n JOIN old_rows o ON o.run_id = n.run_id AND o.attempt = n.attempt
    WHERE n.status IS DISTINCT FROM o.status AND o.status = 'running'
      AND n.status <> 'succeeded';
    RETURN NULL;
END
$$;
