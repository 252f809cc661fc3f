-- One event log per run (DESIGN.md): status changes, attempt start and end,
-- checkpoints written, log lines, replays. It drives the SSE stream, `waypost logs`,
-- `--wait` and the UI.
--
-- Each event is written in the transaction of the change it records: by the
-- statement-level triggers below (one INSERT per statement, whatever the number of
-- rows, so a batched claim or completion writes its events in one go), by the log
-- append and by replays. Writers never NOTIFY: a reader (one pump per coordinator
-- process, only while someone subscribes) follows the table by cursor.
--
-- The cursor is (tx, id): the writing transaction's id and the row's identity.
-- Identity values are drawn before commit, so two transactions commit their events
-- out of id order, and a reader that remembered "id > 100" would miss event 99
-- committed late. Readers instead only take events of transactions older than the
-- oldest one still running (pg_snapshot_xmin of the current snapshot): those are all
-- committed or gone, and every event still to come has a tx at or above that
-- horizon, so ordering by (tx, id) never hands out an event behind a cursor.
--
-- Rolling upgrade: the previous release writes runs, attempts and checkpoints as
-- before and the triggers record its changes too; its log lines are copied (below).
CREATE TABLE run_events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('status', 'attempt_started', 'attempt_finished',
                                       'checkpoint', 'log', 'replay')),
    attempt integer,
    ts timestamptz NOT NULL DEFAULT now(),
    data jsonb NOT NULL DEFAULT '{}'
);
-- A run's stream and its catch-up after Last-Event-ID; also the cascade on delete.
CREATE INDEX run_events_by_run ON run_events (run_id, tx, id);
-- The pump's scan of everything new since its cursor.
CREATE UNIQUE INDEX run_events_by_tx ON run_events (tx, id);

-- Log lines become events of kind 'log' (level, message, fields, step in data):
-- one ordered stream per run instead of two tables with two cursors.
INSERT INTO run_events (run_id, kind, attempt, ts, data)
SELECT run_id, 'log', attempt, ts,
       jsonb_build_object('level', level, 'message', message, 'fields', fields)
FROM run_logs ORDER BY seq;

-- Rolling upgrade (docs/migrations.md): a coordinator of the previous release
-- still appends its runners' lines to run_logs, which this release no longer
-- reads; a trigger copies them into the event log. run_logs and the trigger go in
-- a later release, when no such replica can be running.
CREATE FUNCTION run_events_previous_release_logs() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, ts, data)
    SELECT n.run_id, 'log', n.attempt, n.ts,
           jsonb_build_object('level', n.level, 'message', n.message, 'fields', n.fields)
    FROM new_rows n ORDER BY n.seq;
    RETURN NULL;
END
$$;
CREATE TRIGGER run_events_previous_release_logs AFTER INSERT ON run_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION run_events_previous_release_logs();

CREATE FUNCTION run_events_run_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.id, 'status', n.attempt,
           jsonb_strip_nulls(jsonb_build_object('status', n.status, 'replayOf', n.replay_of,
                                                'source', n.source))
    FROM new_rows n;
    RETURN NULL;
END
$$;

-- A status change carries the error's type, message and exit code, and the result.
CREATE FUNCTION run_events_run_updated() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.id, 'status', n.attempt,
           jsonb_strip_nulls(jsonb_build_object(
               'status', n.status, 'previous', o.status,
               'error', CASE WHEN n.error IS NOT NULL THEN
                   jsonb_build_object('type', n.error ->> 'type',
                                      'message', n.error ->> 'message',
                                      'exitCode', n.error -> 'exitCode') END,
               'result', CASE WHEN n.status = 'succeeded' THEN n.result END))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status;
    RETURN NULL;
END
$$;

CREATE FUNCTION run_events_attempt_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.run_id, 'attempt_started', n.attempt,
           jsonb_strip_nulls(jsonb_build_object('memoryBytes', n.memory_bytes,
                                                'worker', n.worker))
    FROM new_rows n;
    RETURN NULL;
END
$$;

-- The end of an attempt: how it ended, the failure type, exit code and OOM, and the
-- memory limit it ran with.
CREATE FUNCTION run_events_attempt_updated() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
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
    WHERE n.status IS DISTINCT FROM o.status AND o.status = 'running';
    RETURN NULL;
END
$$;

-- A checkpoint written: its key and size, never its data.
CREATE FUNCTION run_events_checkpoint_written() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.run_id, 'checkpoint', n.attempt,
           jsonb_build_object('key', n.key, 'sizeBytes', n.size_bytes)
    FROM new_rows n;
    RETURN NULL;
END
$$;

CREATE TRIGGER run_events_run_inserted AFTER INSERT ON runs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION run_events_run_inserted();
CREATE TRIGGER run_events_run_updated AFTER UPDATE ON runs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION run_events_run_updated();
CREATE TRIGGER run_events_attempt_inserted AFTER INSERT ON attempts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION run_events_attempt_inserted();
CREATE TRIGGER run_events_attempt_updated AFTER UPDATE ON attempts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION run_events_attempt_updated();
CREATE TRIGGER run_events_checkpoint_inserted AFTER INSERT ON checkpoints
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION run_events_checkpoint_written();
CREATE TRIGGER run_events_checkpoint_updated AFTER UPDATE ON checkpoints
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION run_events_checkpoint_written();

-- Replays: the link and the audit record (who, when, from which run and key, and
-- the JSON diff of payload and checkpoints), shown on both runs.
CREATE TABLE run_replays (
    run_id uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    replay_of uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    from_checkpoint text,
    spec_source text NOT NULL CHECK (spec_source IN ('current', 'original')),
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    diff jsonb NOT NULL
);
CREATE INDEX run_replays_of ON run_replays (replay_of, requested_at);
