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
-- Lines a runner process wrote to stdout/stderr (the process backend of dev mode
-- captures them), as log events of attempt :attempt with fields.stream; not fenced:
-- the backend that owns the process writes them, after or beside the attempt.
INSERT INTO run_events (run_id, kind, attempt, ts, data)
SELECT :run_id, 'log', :attempt, l.ts,
       jsonb_build_object('level', l.level, 'message', l.message,
                          'fields', jsonb_build_object('stream', l.stream))
FROM unnest(:ts::timestamptz[], :levels::text[], :messages::text[], :streams::text[])
    AS l(ts, level, message, stream)
WHERE EXISTS (SELECT 1 FROM runs WHERE id = :run_id);
