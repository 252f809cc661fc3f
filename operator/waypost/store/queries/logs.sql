-- name: append_logs
-- A batch of log lines of the current attempt, as events of kind 'log', in one
-- statement; nothing from a superseded attempt.
INSERT INTO run_events (run_id, kind, attempt, ts, data)
SELECT q.run_id, 'log', q.attempt, l.ts,
       jsonb_strip_nulls(jsonb_build_object('level', l.level, 'message', l.message,
                                            'fields', l.fields, 'step', l.step))
FROM run_queue q,
     unnest(:ts::timestamptz[], :levels::text[], :messages::text[], :fields::jsonb[],
            :steps::text[]) AS l(ts, level, message, fields, step)
WHERE q.run_id = :run_id AND q.claim_token = :claim_token AND q.state = 'running';

-- name: append_output
-- Lines runner processes wrote to stdout/stderr (the process backend of dev mode
-- captures them), each as a log event of its run's attempt with fields.stream, the
-- lines of many attempts in one statement; not fenced: the backend that owns the
-- process writes them, after or beside the attempt.
INSERT INTO run_events (run_id, kind, attempt, ts, data)
SELECT l.run_id, 'log', l.attempt, l.ts,
       jsonb_build_object('level', l.level, 'message', l.message,
                          'fields', jsonb_build_object('stream', l.stream))
FROM unnest(:run_ids::uuid[], :attempts::int[], :ts::timestamptz[], :levels::text[],
            :messages::text[], :streams::text[])
    AS l(run_id, attempt, ts, level, message, stream)
WHERE EXISTS (SELECT 1 FROM runs WHERE id = l.run_id);
