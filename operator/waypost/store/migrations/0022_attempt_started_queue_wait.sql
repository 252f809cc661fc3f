-- An attempt's start event carries its queue wait ('queueWaitMs': from when the
-- run became claimable, run_queue.available_at, to the claim; database clock).
-- The leader's metrics reader used to look available_at up in the hot row when it
-- read the event, a moment later; by then a quick retry had often finished and
-- left the hot row, and its queue wait was not counted. The claim's own statement
-- still holds the row (an AFTER trigger sees the whole statement's changes), so
-- the wait is read there once. It costs one primary-key lookup per claimed run and
-- about 20 bytes of the event. Events written before this migration have no
-- queueWaitMs; the reader still falls back to the hot row for them.
CREATE OR REPLACE FUNCTION run_events_attempt_inserted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = waypost, pg_catalog
AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.run_id, 'attempt_started', n.attempt,
           jsonb_strip_nulls(jsonb_build_object(
               'memoryBytes', n.memory_bytes, 'worker', n.worker,
               'queueWaitMs', (SELECT greatest(0, (extract(epoch FROM n.started_at - q.available_at)
                                                   * 1000)::bigint)
                               FROM run_queue q
                               WHERE q.run_id = n.run_id AND q.attempt = n.attempt)))
    FROM new_rows n;
    RETURN NULL;
END
$$;
