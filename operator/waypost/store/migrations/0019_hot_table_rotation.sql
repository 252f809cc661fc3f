-- A hot table that survives a long transaction (issue 15). While any transaction
-- in the database holds an old snapshot (a report in REPEATABLE READ, a
-- pg_dump, a client idle in transaction), vacuum may not remove the row
-- versions that claims and completions leave in run_queue: their index entries
-- pile up at the head of run_queue_ready, every claim walks all of them, and the
-- table grows without bound (benchmarks: enqueue->start p99 181 s after 5 min).
--
-- So run_queue becomes two tables, as PgQ rotates its event tables: a table
-- partitioned by `generation` (0 or 1). New rows go to the current generation
-- (the default of the column reads it from the sequence run_queue_generation).
-- When the current one holds mostly dead rows, the leader rotates
-- (rotate_hot_table, engine/hot_table.py): the other generation becomes the
-- current one, the live rows of the old one (the few ready and running runs) are
-- copied over under an ACCESS EXCLUSIVE lock, and the old one is TRUNCATEd.
-- TRUNCATE removes every row version at once, whatever snapshot is open: it
-- needs no vacuum. It cannot run while another transaction holds a lock on the
-- partition itself (a pg_dump of this schema does); rotate_hot_table then gives
-- up after its lock timeout and the leader vacuums as before.
--
-- The generation is a sequence, not a row: a sequence is not transactional, so
-- the switch is seen at once by every writer and leaves no dead row version
-- behind (a one-row table updated at every rotation would itself bloat under the
-- same long transaction).
--
-- The primary key must contain the partition key: (run_id, generation). A run is
-- still in run_queue at most once: every insert of a run's hot row happens under
-- the lock of its `runs` row in a status that has none (enqueue, requeue,
-- a waking wait), and the rotation moves rows under the table lock.
--
-- Rolling upgrade (docs/migrations.md): `run_queue` keeps its name, its columns
-- and its index names, and the new column has a default, so every statement of
-- the previous release (inserts, heartbeats, completions by run_id/claim_token,
-- the claim functions, which are not changed) runs unchanged against the
-- partitioned table. A previous-release leader does not rotate; its vacuum loop
-- reads the statistics of the partitioned parent, which are zero, so it never
-- vacuums: autovacuum still does (each partition keeps the hot-table settings).
-- The copy holds the table's lock for the migration: a few ms for the few active
-- runs of a live installation.
CREATE SEQUENCE run_queue_generation AS smallint MINVALUE 0 MAXVALUE 1 START 0;

-- The generation new hot rows go to. The sequence's last_value is read as a
-- relation (never nextval: that would advance it). Schema-qualified, since a
-- column default runs with the inserting session's search_path.
CREATE FUNCTION current_hot_generation() RETURNS smallint
    LANGUAGE sql STABLE
    AS $$ SELECT last_value FROM waypost.run_queue_generation $$;

CREATE TABLE run_queue_new (
    run_id uuid NOT NULL,
    seq bigint NOT NULL,
    queue text,
    concurrency_key text,
    priority integer NOT NULL,
    state text NOT NULL CONSTRAINT run_queue_state_check CHECK (state IN ('ready', 'running')),
    available_at timestamptz NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    claim_token bigint,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    queue_id integer NOT NULL,
    generation smallint NOT NULL DEFAULT waypost.current_hot_generation()
) PARTITION BY LIST (generation);

-- Each generation keeps the hot table's storage settings (0001): room for HOT
-- heartbeats, and autovacuum early, for when rotation cannot run.
CREATE TABLE run_queue_0 PARTITION OF run_queue_new FOR VALUES IN (0)
    WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01,
          autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);
CREATE TABLE run_queue_1 PARTITION OF run_queue_new FOR VALUES IN (1)
    WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01,
          autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);

INSERT INTO run_queue_new (run_id, seq, queue, concurrency_key, priority, state, available_at,
                           attempt, claim_token, lease_expires_at, cancel_requested, queue_id,
                           generation)
SELECT run_id, seq, queue, concurrency_key, priority, state, available_at, attempt,
       claim_token, lease_expires_at, cancel_requested, queue_id, 0
FROM run_queue;

DROP TABLE run_queue;
ALTER TABLE run_queue_new RENAME TO run_queue;

ALTER TABLE run_queue ADD CONSTRAINT run_queue_pkey PRIMARY KEY (run_id, generation);
CREATE INDEX run_queue_ready ON run_queue (queue_id, priority DESC, seq)
    WHERE state = 'ready';
CREATE INDEX run_queue_ready_by_key ON run_queue (queue_id, concurrency_key, priority DESC, seq)
    WHERE state = 'ready';
CREATE INDEX run_queue_running ON run_queue (queue_id, concurrency_key)
    WHERE state = 'running';

CREATE TRIGGER run_queue_queue_id BEFORE INSERT ON run_queue
    FOR EACH ROW WHEN (NEW.queue_id IS NULL) EXECUTE FUNCTION run_queue_queue_id();

-- One rotation: make the other generation current, copy the live rows of the old
-- one into it and truncate the old one. Returns the rows copied, or NULL when the
-- old generation could not be locked within p_lock_timeout_ms (a transaction
-- holds a lock on it): then nothing changed, and the lock wait blocked claims for
-- at most that long. Writers that read the old generation just before the switch
-- wait for the lock and insert into the old partition after it was emptied: such
-- a row is in the non-current generation, valid as any, and the next rotation,
-- which copies that generation's rows back, finds it.
CREATE FUNCTION rotate_hot_table(p_lock_timeout_ms integer) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
DECLARE
    v_old smallint := current_hot_generation();
    v_new smallint := 1 - v_old;
    v_moved integer;
BEGIN
    PERFORM setval('run_queue_generation', v_new);
    BEGIN
        PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', 'run_queue_' || v_old);
    EXCEPTION WHEN lock_not_available THEN
        -- The sequence is not transactional: switch back by hand (rows inserted
        -- into the new generation meanwhile are valid where they are).
        PERFORM setval('run_queue_generation', v_old);
        RETURN NULL;
    END;
    EXECUTE format(
        'INSERT INTO run_queue (run_id, seq, queue, concurrency_key, priority, state,
                                available_at, attempt, claim_token, lease_expires_at,
                                cancel_requested, queue_id, generation)
         SELECT run_id, seq, queue, concurrency_key, priority, state, available_at, attempt,
                claim_token, lease_expires_at, cancel_requested, queue_id, %s
         FROM %I', v_new, 'run_queue_' || v_old);
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    EXECUTE format('TRUNCATE %I', 'run_queue_' || v_old);
    RETURN v_moved;
END
$$;
