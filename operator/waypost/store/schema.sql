-- The waypost schema after all migrations: pg_dump --schema-only --schema=waypost.
-- Generated; do not edit. Add a migration, then regenerate with
--     python -m waypost.store.dump_schema > operator/waypost/store/schema.sql
-- tests/integration/test_migrations.py checks that this file matches the migrations.

CREATE SCHEMA waypost;

CREATE FUNCTION waypost.admit_by_key(p_queues integer[], p_limit integer) RETURNS SETOF uuid
    LANGUAGE plpgsql
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH RECURSIVE limits AS (
        SELECT q.id, q.max_concurrency, q.per_key_concurrency,
               (SELECT count(*) FROM run_queue r
                WHERE r.queue_id = q.id AND r.state = 'running') AS running
        FROM queues q WHERE q.id = ANY(p_queues) AND q.per_key_concurrency IS NOT NULL
    ), ready_keys AS (
        SELECT l.id AS queue_id,
               (SELECT r.concurrency_key FROM run_queue r
                WHERE r.queue_id = l.id AND r.state = 'ready' AND r.concurrency_key IS NOT NULL
                ORDER BY r.concurrency_key LIMIT 1) AS concurrency_key
        FROM limits l
        UNION ALL
        SELECT k.queue_id,
               (SELECT r.concurrency_key FROM run_queue r
                WHERE r.queue_id = k.queue_id AND r.state = 'ready'
                  AND r.concurrency_key > k.concurrency_key
                ORDER BY r.concurrency_key LIMIT 1)
        FROM ready_keys k WHERE k.concurrency_key IS NOT NULL
    ), candidates AS (
        SELECT c.run_id, c.queue_id, c.priority, c.seq
        FROM ready_keys k
        JOIN limits l ON l.id = k.queue_id
        CROSS JOIN LATERAL (
            SELECT count(*) AS running FROM run_queue r
            WHERE r.queue_id = k.queue_id AND r.concurrency_key = k.concurrency_key
              AND r.state = 'running'
        ) rk
        CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue_id, r.priority, r.seq FROM run_queue r
            WHERE r.queue_id = k.queue_id AND r.concurrency_key = k.concurrency_key
              AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT greatest(0, least(p_limit, l.per_key_concurrency - rk.running))
            FOR UPDATE OF r SKIP LOCKED
        ) c
        WHERE k.concurrency_key IS NOT NULL
        UNION ALL
        SELECT c.run_id, c.queue_id, c.priority, c.seq
        FROM limits l CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue_id, r.priority, r.seq FROM run_queue r
            WHERE r.queue_id = l.id AND r.concurrency_key IS NULL
              AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT p_limit
            FOR UPDATE OF r SKIP LOCKED
        ) c
    )
    SELECT c.run_id FROM (
        SELECT c.*, row_number() OVER (PARTITION BY c.queue_id
                                       ORDER BY c.priority DESC, c.seq) AS queue_rank
        FROM candidates c
    ) c JOIN limits l ON l.id = c.queue_id
    WHERE l.max_concurrency IS NULL OR c.queue_rank + l.running <= l.max_concurrency
    ORDER BY c.priority DESC, c.seq
    LIMIT p_limit;
END
$$;

CREATE FUNCTION waypost.admit_heads(p_queues integer[], p_reserve integer[], p_cap integer[], p_limit integer) RETURNS SETOF uuid
    LANGUAGE plpgsql
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH limits AS (
        SELECT q.id, q.max_concurrency, q.per_key_concurrency,
               coalesce(g.reserve, 0) AS reserve, g.cap,
               (SELECT count(*) FROM run_queue r
                WHERE r.queue_id = q.id AND r.state = 'running'
                  AND q.max_concurrency IS NOT NULL) AS running
        FROM unnest(p_queues, p_reserve, p_cap) AS g(id, reserve, cap)
        JOIN queues q ON q.id = g.id
        -- A queue that gained a limit after claim_gates saw none waits for the next claim.
        WHERE g.reserve IS NOT NULL
           OR (q.max_concurrency IS NULL AND q.per_key_concurrency IS NULL)
    ), candidates AS (
        SELECT c.run_id, c.queue_id, c.concurrency_key, c.priority, c.seq
        FROM limits l CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue_id, r.concurrency_key, r.priority, r.seq
            FROM run_queue r
            WHERE r.queue_id = l.id AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT greatest(0, least(l.cap,
                                    coalesce(l.max_concurrency - l.running - l.reserve, l.cap)))
            FOR UPDATE OF r SKIP LOCKED
        ) c
    ), keys AS (
        SELECT k.queue_id, k.concurrency_key,
               (SELECT count(*) FROM run_queue r
                WHERE r.queue_id = k.queue_id AND r.concurrency_key = k.concurrency_key
                  AND r.state = 'running') AS running
        FROM (SELECT DISTINCT c.queue_id, c.concurrency_key
              FROM candidates c JOIN limits l ON l.id = c.queue_id
              WHERE l.per_key_concurrency IS NOT NULL AND c.concurrency_key IS NOT NULL) k
    )
    SELECT c.run_id FROM (
        SELECT c.*, row_number() OVER (PARTITION BY c.queue_id, c.concurrency_key
                                       ORDER BY c.priority DESC, c.seq) AS key_rank
        FROM candidates c
    ) c
    JOIN limits l ON l.id = c.queue_id
    LEFT JOIN keys k ON k.queue_id = c.queue_id AND k.concurrency_key = c.concurrency_key
    WHERE l.per_key_concurrency IS NULL OR c.concurrency_key IS NULL
       OR k.running + c.key_rank + l.reserve <= l.per_key_concurrency
    ORDER BY c.priority DESC, c.seq
    LIMIT p_limit;
END
$$;

CREATE FUNCTION waypost.claim_gates(p_leader_epoch bigint, p_limit integer) RETURNS TABLE(queue_id integer, reserve integer, cap integer, by_key boolean)
    LANGUAGE plpgsql
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
#variable_conflict use_column
DECLARE
    c_lanes CONSTANT integer := 4;
    c_lane_cap CONSTANT integer := 50;
    c_gate CONSTANT integer := 2003828736;
    g record;
    v_lane integer;
BEGIN
    FOR g IN
        SELECT s.id, s.limited, s.per_key_concurrency IS NOT NULL AS keyed,
               s.limited AND (s.max_concurrency IS NULL
                              OR s.running + c_lanes * c_lane_cap <= s.max_concurrency)
                 AND (s.per_key_concurrency IS NULL
                      OR s.running + c_lanes * c_lane_cap <= s.per_key_concurrency
                      OR CASE WHEN s.running + c_lanes * c_lane_cap > s.per_key_concurrency
                         THEN (SELECT coalesce(max(k.n), 0) FROM (
                                   SELECT count(*) AS n FROM run_queue r
                                   WHERE r.queue_id = s.id AND r.state = 'running'
                                     AND r.concurrency_key IS NOT NULL
                                   GROUP BY r.concurrency_key) k)
                              + c_lanes * c_lane_cap <= s.per_key_concurrency
                         END) AS far
        FROM (
            SELECT q.id, q.max_concurrency, q.per_key_concurrency,
                   q.max_concurrency IS NOT NULL OR q.per_key_concurrency IS NOT NULL
                       AS limited,
                   (SELECT count(*) FROM run_queue r
                    WHERE r.queue_id = q.id AND r.state = 'running'
                      AND (q.max_concurrency IS NOT NULL
                           OR q.per_key_concurrency IS NOT NULL)) AS running
            FROM queues q
            WHERE (p_leader_epoch IS NULL
                   OR EXISTS (SELECT 1 FROM leadership l WHERE l.epoch = p_leader_epoch
                              FOR SHARE))
              AND (SELECT true FROM run_queue r WHERE r.queue_id = q.id AND r.state = 'ready'
                   AND r.available_at <= now() ORDER BY r.priority DESC, r.seq LIMIT 1)
        ) s
        ORDER BY s.id
    LOOP
        IF NOT g.limited THEN
            queue_id := g.id; reserve := NULL; cap := p_limit; by_key := false;
            RETURN NEXT;
        ELSIF g.far THEN
            IF pg_try_advisory_xact_lock_shared(c_gate, g.id) THEN
                FOR v_lane IN 1..c_lanes LOOP
                    IF pg_try_advisory_xact_lock(c_gate + v_lane, g.id) THEN
                        queue_id := g.id; reserve := (c_lanes - 1) * c_lane_cap;
                        cap := least(p_limit, c_lane_cap); by_key := false;
                        RETURN NEXT;
                        EXIT;
                    END IF;
                END LOOP;
            END IF;
        ELSIF pg_try_advisory_xact_lock(c_gate, g.id) THEN
            queue_id := g.id; reserve := 0; cap := p_limit; by_key := g.keyed;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION waypost.claim_ready_runs(p_locked integer[], p_limit integer, p_lease_seconds double precision, p_worker text, p_unlocked integer[]) RETURNS TABLE(run_id uuid, attempt integer, claim_token bigint, lease_expires_at timestamp with time zone, namespace text, task text, spec jsonb, memory_bytes bigint, trace_id text, attempt_base integer, idempotency_key text, taskrun_name text)
    LANGUAGE plpgsql
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH RECURSIVE limits AS (
        SELECT q.id, q.max_concurrency, q.per_key_concurrency,
               (SELECT count(*) FROM run_queue r
                WHERE r.queue_id = q.id AND r.state = 'running') AS running
        FROM queues q WHERE q.id = ANY(p_locked)
        UNION ALL
        SELECT q.id, NULL, NULL, 0 FROM queues q
        WHERE q.id = ANY(p_unlocked) AND q.max_concurrency IS NULL
          AND q.per_key_concurrency IS NULL
    ), ready_keys AS (
        SELECT l.id AS queue_id,
               (SELECT r.concurrency_key FROM run_queue r
                WHERE r.queue_id = l.id AND r.state = 'ready' AND r.concurrency_key IS NOT NULL
                ORDER BY r.concurrency_key LIMIT 1) AS concurrency_key
        FROM limits l WHERE l.per_key_concurrency IS NOT NULL
        UNION ALL
        SELECT k.queue_id,
               (SELECT r.concurrency_key FROM run_queue r
                WHERE r.queue_id = k.queue_id AND r.state = 'ready'
                  AND r.concurrency_key > k.concurrency_key
                ORDER BY r.concurrency_key LIMIT 1)
        FROM ready_keys k WHERE k.concurrency_key IS NOT NULL
    ), running_keys AS (
        SELECT r.queue_id, r.concurrency_key, count(*) AS running
        FROM run_queue r JOIN limits l ON l.id = r.queue_id AND l.per_key_concurrency IS NOT NULL
        WHERE r.state = 'running' AND r.concurrency_key IS NOT NULL
        GROUP BY r.queue_id, r.concurrency_key
    ), candidates AS (
        SELECT c.run_id, c.queue_id, c.priority, c.seq
        FROM limits l CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue_id, r.priority, r.seq FROM run_queue r
            WHERE r.queue_id = l.id AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT greatest(0, least(p_limit, coalesce(l.max_concurrency - l.running, p_limit)))
            FOR UPDATE OF r SKIP LOCKED
        ) c
        WHERE l.per_key_concurrency IS NULL
        UNION ALL
        SELECT c.run_id, c.queue_id, c.priority, c.seq
        FROM ready_keys k
        JOIN limits l ON l.id = k.queue_id
        LEFT JOIN running_keys rk
               ON rk.queue_id = k.queue_id AND rk.concurrency_key = k.concurrency_key
        CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue_id, r.priority, r.seq FROM run_queue r
            WHERE r.queue_id = k.queue_id AND r.concurrency_key = k.concurrency_key
              AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT greatest(0, least(p_limit, l.per_key_concurrency - coalesce(rk.running, 0)))
        ) c
        WHERE k.concurrency_key IS NOT NULL
        UNION ALL
        SELECT c.run_id, c.queue_id, c.priority, c.seq
        FROM limits l CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue_id, r.priority, r.seq FROM run_queue r
            WHERE r.queue_id = l.id AND r.concurrency_key IS NULL
              AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT p_limit
        ) c
        WHERE l.per_key_concurrency IS NOT NULL
    ), admitted AS (
        SELECT c.run_id FROM (
            SELECT c.*, row_number() OVER (PARTITION BY c.queue_id
                                           ORDER BY c.priority DESC, c.seq) AS queue_rank
            FROM candidates c
        ) c JOIN limits l ON l.id = c.queue_id
        WHERE l.max_concurrency IS NULL OR c.queue_rank + l.running <= l.max_concurrency
        ORDER BY c.priority DESC, c.seq
        LIMIT p_limit
    ), claimed AS (
        UPDATE run_queue q
        SET state = 'running',
            attempt = q.attempt + 1,
            claim_token = nextval('claim_tokens'),
            lease_expires_at = now() + make_interval(secs => p_lease_seconds)
        FROM admitted a
        WHERE q.run_id = a.run_id AND q.state = 'ready'
        RETURNING q.run_id, q.attempt, q.claim_token, q.lease_expires_at
    ), started AS (
        UPDATE runs r
        SET status = 'running', attempt = c.attempt,
            started_at = coalesce(r.started_at, now()), updated_at = now()
        FROM claimed c WHERE r.id = c.run_id
        RETURNING r.id, r.namespace, r.task, r.spec, r.memory_bytes, r.trace_id,
                  r.attempt_base, r.idempotency_key, r.taskrun_name
    ), opened AS (
        INSERT INTO attempts (run_id, attempt, claim_token, status, memory_bytes, worker)
        SELECT c.run_id, c.attempt, c.claim_token, 'running', s.memory_bytes, p_worker
        FROM claimed c JOIN started s ON s.id = c.run_id
    )
    SELECT c.run_id, c.attempt, c.claim_token, c.lease_expires_at, s.namespace, s.task,
           s.spec, s.memory_bytes, s.trace_id, s.attempt_base, s.idempotency_key,
           s.taskrun_name
    FROM claimed c JOIN started s ON s.id = c.run_id;
END
$$;

CREATE FUNCTION waypost.claim_runs(p_ack_run_ids uuid[], p_ack_tokens bigint[], p_ack_results jsonb[], p_limit integer, p_lease_seconds double precision, p_worker text, p_leader_epoch bigint) RETURNS TABLE(acked boolean, run_id uuid, attempt integer, claim_token bigint, lease_expires_at timestamp with time zone, namespace text, task text, spec jsonb, memory_bytes bigint, trace_id text, attempt_base integer, idempotency_key text, taskrun_name text)
    LANGUAGE plpgsql
    SET jit TO 'off'
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
DECLARE
    v_queues integer[];
    v_reserve integer[];
    v_cap integer[];
    v_by_key integer[];
    v_runs uuid[];
BEGIN
    IF cardinality(p_ack_run_ids) > 0 THEN
        RETURN QUERY
        SELECT true, c.id, NULL::integer, NULL::bigint, NULL::timestamptz, NULL::text,
               NULL::text, NULL::jsonb, NULL::bigint, NULL::text, NULL::integer, NULL::text,
               NULL::text
        FROM complete_attempts(p_ack_run_ids, p_ack_tokens, p_ack_results) AS c(id);
    END IF;
    -- The gates come first, in a statement of their own: the admissions below take
    -- their snapshots after them, so their counts are the exact ones.
    SELECT array_agg(g.queue_id), array_agg(g.reserve), array_agg(g.cap),
           array_agg(g.queue_id) FILTER (WHERE g.by_key)
      INTO v_queues, v_reserve, v_cap, v_by_key
      FROM claim_gates(p_leader_epoch, p_limit) g;
    IF v_queues IS NULL THEN
        RETURN;
    END IF;
    v_runs := ARRAY(SELECT admit_heads(v_queues, v_reserve, v_cap, p_limit));
    RETURN QUERY
    SELECT false, c.* FROM start_claimed(v_runs, p_lease_seconds, p_worker) c;
    -- A per-key limit refused some heads: other keys may still have runs to give.
    -- This statement sees the runs claimed above as running.
    IF v_by_key IS NOT NULL AND cardinality(v_runs) < p_limit THEN
        v_runs := ARRAY(SELECT admit_by_key(v_by_key, p_limit - cardinality(v_runs)));
        IF cardinality(v_runs) > 0 THEN
            RETURN QUERY
            SELECT false, c.* FROM start_claimed(v_runs, p_lease_seconds, p_worker) c;
        END IF;
    END IF;
END
$$;

CREATE FUNCTION waypost.complete_attempts(p_run_ids uuid[], p_tokens bigint[], p_results jsonb[]) RETURNS SETOF uuid
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    SET jit TO 'off'
    AS $$
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest(p_run_ids, p_tokens, p_results) AS i(run_id, claim_token, result)
    ), finished AS (
        DELETE FROM run_queue q USING input i
        WHERE q.run_id = i.run_id AND q.claim_token = i.claim_token AND q.state = 'running'
        RETURNING q.run_id, q.attempt
    ), run AS (
        UPDATE runs SET status = 'succeeded', result = i.result, error = NULL,
                        finished_at = now(), updated_at = now()
        FROM finished f JOIN input i ON i.run_id = f.run_id WHERE runs.id = f.run_id
    ), attempt AS (
        UPDATE attempts SET status = 'succeeded', finished_at = now()
        FROM finished f WHERE attempts.run_id = f.run_id AND attempts.attempt = f.attempt
    )
    SELECT f.run_id FROM finished f;
END
$$;

CREATE FUNCTION waypost.current_hot_generation() RETURNS smallint
    LANGUAGE sql STABLE
    AS $$ SELECT last_value FROM waypost.run_queue_generation $$;

CREATE FUNCTION waypost.lock_claimable_queues(p_leader_epoch bigint) RETURNS TABLE(queue_id integer, locked boolean)
    LANGUAGE plpgsql
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH leader AS (
        SELECT p_leader_epoch IS NULL
               OR EXISTS (SELECT 1 FROM leadership l WHERE l.epoch = p_leader_epoch FOR SHARE)
               AS ok
    ), limited AS (
        SELECT queues.id FROM queues
        WHERE (max_concurrency IS NOT NULL OR per_key_concurrency IS NOT NULL)
          AND (SELECT ok FROM leader)
          AND (SELECT true FROM run_queue r WHERE r.queue_id = queues.id AND r.state = 'ready'
               AND r.available_at <= now() ORDER BY r.priority DESC, r.seq LIMIT 1)
        FOR UPDATE OF queues SKIP LOCKED
    )
    SELECT limited.id, true FROM limited
    UNION ALL
    SELECT queues.id, false FROM queues
    WHERE max_concurrency IS NULL AND per_key_concurrency IS NULL
      AND (SELECT ok FROM leader)
      AND (SELECT true FROM run_queue r WHERE r.queue_id = queues.id AND r.state = 'ready'
           AND r.available_at <= now() ORDER BY r.priority DESC, r.seq LIMIT 1);
END
$$;

CREATE FUNCTION waypost.rotate_hot_table(p_lock_timeout_ms integer) RETURNS integer
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

CREATE FUNCTION waypost.run_events_attempt_updated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    SET enable_nestloop TO 'off'
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

CREATE FUNCTION waypost.run_events_checkpoint_written() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.run_id, 'checkpoint', n.attempt,
           jsonb_build_object('key', n.key, 'sizeBytes', n.size_bytes, 'seq', n.seq)
    FROM new_rows n;
    RETURN NULL;
END
$$;

CREATE FUNCTION waypost.run_events_previous_release_logs() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, ts, data)
    SELECT n.run_id, 'log', n.attempt, n.ts,
           jsonb_build_object('level', n.level, 'message', n.message, 'fields', n.fields)
    FROM new_rows n ORDER BY n.seq;
    RETURN NULL;
END
$$;

CREATE FUNCTION waypost.run_events_run_inserted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.id, 'status', n.attempt,
           jsonb_strip_nulls(jsonb_build_object('status', n.status, 'replayOf', n.replay_of,
                                                'source', n.source))
    FROM new_rows n;
    RETURN NULL;
END
$$;

CREATE FUNCTION waypost.run_events_run_updated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    SET enable_nestloop TO 'off'
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

CREATE FUNCTION waypost.run_events_wake_readers() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM run_event_readers WHERE armed_until > now()) THEN
        PERFORM pg_notify('waypost_events', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION waypost.run_queue_queue_id() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
BEGIN
    NEW.queue_id := (SELECT q.id FROM runs r
                     JOIN queues q ON q.namespace = r.namespace AND q.name = NEW.queue
                     WHERE r.id = NEW.run_id);
    NEW.queue := NULL;
    RETURN NEW;
END
$$;

CREATE FUNCTION waypost.run_waits_child_ended() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
BEGIN
    UPDATE run_waits w SET due_at = now()
    FROM (SELECT DISTINCT n.parent_run_id FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE n.parent_run_id IS NOT NULL AND n.status IS DISTINCT FROM o.status
            AND n.status IN ('succeeded', 'failed', 'dead_lettered', 'cancelled', 'expired'))
         AS ended
    WHERE w.run_id = ended.parent_run_id AND w.kind = 'children';
    RETURN NULL;
END
$$;

CREATE FUNCTION waypost.start_claimed(p_run_ids uuid[], p_lease_seconds double precision, p_worker text) RETURNS TABLE(run_id uuid, attempt integer, claim_token bigint, lease_expires_at timestamp with time zone, namespace text, task text, spec jsonb, memory_bytes bigint, trace_id text, attempt_base integer, idempotency_key text, taskrun_name text)
    LANGUAGE plpgsql
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    SET search_path TO 'waypost', 'pg_catalog'
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH claimed AS (
        UPDATE run_queue q
        SET state = 'running',
            attempt = q.attempt + 1,
            claim_token = nextval('claim_tokens'),
            lease_expires_at = now() + make_interval(secs => p_lease_seconds)
        FROM unnest(p_run_ids) WITH ORDINALITY AS a(run_id, ord)
        WHERE q.run_id = a.run_id AND q.state = 'ready'
        RETURNING q.run_id, q.attempt, q.claim_token, q.lease_expires_at, a.ord
    ), started AS (
        UPDATE runs r
        SET status = 'running', attempt = c.attempt,
            started_at = coalesce(r.started_at, now()), updated_at = now()
        FROM claimed c WHERE r.id = c.run_id
        RETURNING r.id, r.namespace, r.task, r.spec, r.memory_bytes, r.trace_id,
                  r.attempt_base, r.idempotency_key, r.taskrun_name
    ), opened AS (
        INSERT INTO attempts (run_id, attempt, claim_token, status, memory_bytes, worker)
        SELECT c.run_id, c.attempt, c.claim_token, 'running', s.memory_bytes, p_worker
        FROM claimed c JOIN started s ON s.id = c.run_id
    )
    SELECT c.run_id, c.attempt, c.claim_token, c.lease_expires_at, s.namespace, s.task,
           s.spec, s.memory_bytes, s.trace_id, s.attempt_base, s.idempotency_key,
           s.taskrun_name
    FROM claimed c JOIN started s ON s.id = c.run_id
    ORDER BY c.ord;
END
$$;

CREATE TABLE waypost.attempts (
    run_id uuid NOT NULL,
    attempt integer NOT NULL,
    claim_token bigint NOT NULL,
    status text NOT NULL,
    memory_bytes bigint NOT NULL,
    worker text,
    error jsonb,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    peak_memory_bytes bigint,
    step_peaks jsonb,
    task_seconds real,
    runner_started_at timestamp with time zone,
    CONSTRAINT attempts_peak_memory_bytes_check CHECK (((peak_memory_bytes IS NULL) OR (peak_memory_bytes >= 0))),
    CONSTRAINT attempts_status_check CHECK ((status = ANY (ARRAY['running'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text, 'suspended'::text]))),
    CONSTRAINT attempts_task_seconds_check CHECK (((task_seconds IS NULL) OR (task_seconds >= (0)::double precision)))
);

CREATE TABLE waypost.checkpoints (
    run_id uuid NOT NULL,
    key text NOT NULL,
    seq bigint NOT NULL,
    attempt integer NOT NULL,
    data jsonb NOT NULL,
    size_bytes integer NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE SEQUENCE waypost.checkpoints_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE waypost.checkpoints_seq_seq OWNED BY waypost.checkpoints.seq;

CREATE SEQUENCE waypost.claim_tokens
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

CREATE TABLE waypost.runs (
    id uuid NOT NULL,
    seq bigint NOT NULL,
    namespace text NOT NULL,
    task text NOT NULL,
    queue text NOT NULL,
    status text NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    payload jsonb,
    idempotency_key text,
    concurrency_key text,
    spec jsonb NOT NULL,
    memory_bytes bigint NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    attempt_base integer DEFAULT 0 NOT NULL,
    result jsonb,
    error jsonb,
    trace_id text NOT NULL,
    replay_of uuid,
    source text DEFAULT 'api'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    taskrun_name text,
    spec_generation bigint,
    spec_choice text DEFAULT 'trigger'::text NOT NULL,
    original jsonb,
    parent_run_id uuid,
    parent_span_id text,
    parent_sampled boolean,
    CONSTRAINT runs_parent_sampled_check CHECK (((parent_sampled IS NULL) OR (parent_span_id IS NOT NULL))),
    CONSTRAINT runs_parent_span_id_check CHECK (((parent_span_id IS NULL) OR (parent_span_id ~ '^[0-9a-f]{16}$'::text))),
    CONSTRAINT runs_spec_choice_check CHECK ((spec_choice = ANY (ARRAY['trigger'::text, 'current'::text, 'original'::text]))),
    CONSTRAINT runs_status_check CHECK ((status = ANY (ARRAY['queued'::text, 'running'::text, 'retrying'::text, 'succeeded'::text, 'failed'::text, 'dead_lettered'::text, 'cancelled'::text, 'delayed'::text, 'waiting'::text, 'expired'::text])))
);

CREATE VIEW waypost.dead_letters AS
 SELECT runs.id,
    runs.namespace,
    runs.task,
    runs.queue,
    runs.attempt,
    runs.error,
    runs.payload,
    runs.created_at,
    runs.finished_at
   FROM waypost.runs
  WHERE (runs.status = 'dead_lettered'::text);

CREATE TABLE waypost.leadership (
    singleton boolean DEFAULT true NOT NULL,
    epoch bigint NOT NULL,
    holder text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT leadership_singleton_check CHECK (singleton)
);

CREATE TABLE waypost.queues (
    name text NOT NULL,
    max_concurrency integer,
    per_key_concurrency integer,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    namespace text NOT NULL,
    id integer NOT NULL,
    CONSTRAINT queues_max_concurrency_check CHECK (((max_concurrency IS NULL) OR (max_concurrency >= 1))),
    CONSTRAINT queues_per_key_concurrency_check CHECK (((per_key_concurrency IS NULL) OR (per_key_concurrency >= 1)))
);

ALTER TABLE waypost.queues ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME waypost.queues_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE UNLOGGED TABLE waypost.run_event_readers (
    reader uuid NOT NULL,
    armed_until timestamp with time zone NOT NULL
);

CREATE TABLE waypost.run_events (
    id bigint NOT NULL,
    tx xid8 DEFAULT pg_current_xact_id() NOT NULL,
    run_id uuid NOT NULL,
    kind text NOT NULL,
    attempt integer,
    ts timestamp with time zone DEFAULT now() NOT NULL,
    data jsonb DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT run_events_kind_check CHECK ((kind = ANY (ARRAY['status'::text, 'attempt_started'::text, 'attempt_finished'::text, 'checkpoint'::text, 'log'::text, 'replay'::text])))
);

ALTER TABLE waypost.run_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME waypost.run_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE waypost.run_logs (
    run_id uuid NOT NULL,
    seq bigint NOT NULL,
    attempt integer NOT NULL,
    ts timestamp with time zone NOT NULL,
    level text NOT NULL,
    message text NOT NULL,
    fields jsonb DEFAULT '{}'::jsonb NOT NULL
);

CREATE SEQUENCE waypost.run_logs_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE waypost.run_logs_seq_seq OWNED BY waypost.run_logs.seq;

CREATE TABLE waypost.run_queue (
    run_id uuid NOT NULL,
    seq bigint NOT NULL,
    queue text,
    concurrency_key text,
    priority integer NOT NULL,
    state text NOT NULL,
    available_at timestamp with time zone NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    claim_token bigint,
    lease_expires_at timestamp with time zone,
    cancel_requested boolean DEFAULT false NOT NULL,
    queue_id integer NOT NULL,
    generation smallint DEFAULT waypost.current_hot_generation() NOT NULL,
    CONSTRAINT run_queue_state_check CHECK ((state = ANY (ARRAY['ready'::text, 'running'::text])))
)
PARTITION BY LIST (generation);

CREATE TABLE waypost.run_queue_0 (
    run_id uuid NOT NULL,
    seq bigint NOT NULL,
    queue text,
    concurrency_key text,
    priority integer NOT NULL,
    state text NOT NULL,
    available_at timestamp with time zone NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    claim_token bigint,
    lease_expires_at timestamp with time zone,
    cancel_requested boolean DEFAULT false NOT NULL,
    queue_id integer NOT NULL,
    generation smallint DEFAULT waypost.current_hot_generation() NOT NULL,
    CONSTRAINT run_queue_state_check CHECK ((state = ANY (ARRAY['ready'::text, 'running'::text])))
)
WITH (fillfactor='70', autovacuum_vacuum_scale_factor='0.01', autovacuum_vacuum_threshold='1000', autovacuum_vacuum_cost_delay='0');

CREATE TABLE waypost.run_queue_1 (
    run_id uuid NOT NULL,
    seq bigint NOT NULL,
    queue text,
    concurrency_key text,
    priority integer NOT NULL,
    state text NOT NULL,
    available_at timestamp with time zone NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    claim_token bigint,
    lease_expires_at timestamp with time zone,
    cancel_requested boolean DEFAULT false NOT NULL,
    queue_id integer NOT NULL,
    generation smallint DEFAULT waypost.current_hot_generation() NOT NULL,
    CONSTRAINT run_queue_state_check CHECK ((state = ANY (ARRAY['ready'::text, 'running'::text])))
)
WITH (fillfactor='70', autovacuum_vacuum_scale_factor='0.01', autovacuum_vacuum_threshold='1000', autovacuum_vacuum_cost_delay='0');

CREATE SEQUENCE waypost.run_queue_generation
    AS smallint
    START WITH 0
    INCREMENT BY 1
    MINVALUE 0
    MAXVALUE 1
    CACHE 1;

CREATE TABLE waypost.run_replays (
    run_id uuid NOT NULL,
    replay_of uuid NOT NULL,
    from_checkpoint text,
    spec_source text NOT NULL,
    requested_by text NOT NULL,
    requested_at timestamp with time zone DEFAULT now() NOT NULL,
    diff jsonb NOT NULL,
    CONSTRAINT run_replays_spec_source_check CHECK ((spec_source = ANY (ARRAY['current'::text, 'original'::text])))
);

CREATE TABLE waypost.run_ttls (
    run_id uuid NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

CREATE TABLE waypost.run_waits (
    run_id uuid NOT NULL,
    kind text NOT NULL,
    step_key text,
    due_at timestamp with time zone,
    until timestamp with time zone,
    token_id uuid,
    child_ids uuid[],
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT run_waits_kind_check CHECK ((kind = ANY (ARRAY['delay'::text, 'sleep'::text, 'token'::text, 'children'::text])))
);

CREATE SEQUENCE waypost.runs_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE waypost.runs_seq_seq OWNED BY waypost.runs.seq;

CREATE TABLE waypost.schedules (
    namespace text NOT NULL,
    task text NOT NULL,
    name text NOT NULL,
    cron text NOT NULL,
    timezone text DEFAULT 'UTC'::text NOT NULL,
    payload jsonb,
    missed_runs text DEFAULT 'Skip'::text NOT NULL,
    catchup_limit integer DEFAULT 10 NOT NULL,
    suspended boolean DEFAULT false NOT NULL,
    next_fire_at timestamp with time zone,
    last_fire_at timestamp with time zone,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT schedules_catchup_limit_check CHECK ((catchup_limit >= 1)),
    CONSTRAINT schedules_missed_runs_check CHECK ((missed_runs = ANY (ARRAY['Skip'::text, 'Catchup'::text])))
);

CREATE TABLE waypost.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE waypost.signing_keys (
    id integer NOT NULL,
    key bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE waypost.task_insights (
    namespace text NOT NULL,
    task text NOT NULL,
    pattern text NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    cleared_at timestamp with time zone,
    announced text,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT task_insights_announced_check CHECK ((announced = ANY (ARRAY['raised'::text, 'cleared'::text]))),
    CONSTRAINT task_insights_pattern_check CHECK ((pattern = ANY (ARRAY['timeout_loop'::text, 'retry_storm'::text, 'checkpoint_gap'::text, 'memory_growth'::text])))
);

CREATE TABLE waypost.tasks (
    namespace text NOT NULL,
    name text NOT NULL,
    spec jsonb NOT NULL,
    queue text NOT NULL,
    memory_bytes bigint NOT NULL,
    default_priority integer DEFAULT 0 NOT NULL,
    generation bigint DEFAULT 1 NOT NULL,
    deleted_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    retain_seconds double precision,
    CONSTRAINT tasks_retain_seconds_check CHECK (((retain_seconds IS NULL) OR (retain_seconds > (0)::double precision)))
);

CREATE TABLE waypost.wait_tokens (
    id uuid NOT NULL,
    namespace text NOT NULL,
    run_id uuid,
    idempotency_scope text NOT NULL,
    idempotency_key text,
    secret text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    data jsonb,
    timeout_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    completed_at timestamp with time zone,
    CONSTRAINT wait_tokens_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'completed'::text, 'timed_out'::text])))
);

CREATE TABLE waypost.warm_runners (
    runner_id uuid NOT NULL,
    namespace text NOT NULL,
    task text NOT NULL,
    fingerprint text NOT NULL,
    state text NOT NULL,
    run_id uuid,
    claim_token bigint,
    idle_ttl_seconds double precision NOT NULL,
    runs_served integer DEFAULT 0 NOT NULL,
    first_rss_bytes bigint,
    last_rss_bytes bigint,
    retired_reason text,
    retire_after_run boolean DEFAULT false NOT NULL,
    registered_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    idle_since timestamp with time zone,
    retired_at timestamp with time zone,
    CONSTRAINT warm_runners_check CHECK (((state = 'busy'::text) = ((run_id IS NOT NULL) AND (claim_token IS NOT NULL)))),
    CONSTRAINT warm_runners_idle_ttl_seconds_check CHECK ((idle_ttl_seconds > (0)::double precision)),
    CONSTRAINT warm_runners_state_check CHECK ((state = ANY (ARRAY['idle'::text, 'busy'::text, 'retired'::text])))
);

ALTER TABLE ONLY waypost.run_queue ATTACH PARTITION waypost.run_queue_0 FOR VALUES IN ('0');

ALTER TABLE ONLY waypost.run_queue ATTACH PARTITION waypost.run_queue_1 FOR VALUES IN ('1');

ALTER TABLE ONLY waypost.checkpoints ALTER COLUMN seq SET DEFAULT nextval('waypost.checkpoints_seq_seq'::regclass);

ALTER TABLE ONLY waypost.run_logs ALTER COLUMN seq SET DEFAULT nextval('waypost.run_logs_seq_seq'::regclass);

ALTER TABLE ONLY waypost.runs ALTER COLUMN seq SET DEFAULT nextval('waypost.runs_seq_seq'::regclass);

ALTER TABLE ONLY waypost.attempts
    ADD CONSTRAINT attempts_claim_token_key UNIQUE (claim_token);

ALTER TABLE ONLY waypost.attempts
    ADD CONSTRAINT attempts_pkey PRIMARY KEY (run_id, attempt);

ALTER TABLE ONLY waypost.checkpoints
    ADD CONSTRAINT checkpoints_pkey PRIMARY KEY (run_id, key);

ALTER TABLE ONLY waypost.leadership
    ADD CONSTRAINT leadership_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY waypost.queues
    ADD CONSTRAINT queues_id_key UNIQUE (id);

ALTER TABLE ONLY waypost.queues
    ADD CONSTRAINT queues_pkey PRIMARY KEY (namespace, name);

ALTER TABLE ONLY waypost.run_event_readers
    ADD CONSTRAINT run_event_readers_pkey PRIMARY KEY (reader);

ALTER TABLE ONLY waypost.run_logs
    ADD CONSTRAINT run_logs_pkey PRIMARY KEY (run_id, seq);

ALTER TABLE ONLY waypost.run_replays
    ADD CONSTRAINT run_replays_pkey PRIMARY KEY (run_id);

ALTER TABLE ONLY waypost.run_ttls
    ADD CONSTRAINT run_ttls_pkey PRIMARY KEY (run_id);

ALTER TABLE ONLY waypost.run_waits
    ADD CONSTRAINT run_waits_pkey PRIMARY KEY (run_id);

ALTER TABLE ONLY waypost.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY waypost.runs
    ADD CONSTRAINT runs_seq_key UNIQUE (seq);

ALTER TABLE ONLY waypost.schedules
    ADD CONSTRAINT schedules_pkey PRIMARY KEY (namespace, task, name);

ALTER TABLE ONLY waypost.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY waypost.signing_keys
    ADD CONSTRAINT signing_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY waypost.task_insights
    ADD CONSTRAINT task_insights_pkey PRIMARY KEY (namespace, task, pattern);

ALTER TABLE ONLY waypost.tasks
    ADD CONSTRAINT tasks_pkey PRIMARY KEY (namespace, name);

ALTER TABLE ONLY waypost.wait_tokens
    ADD CONSTRAINT wait_tokens_pkey PRIMARY KEY (id);

ALTER TABLE ONLY waypost.warm_runners
    ADD CONSTRAINT warm_runners_pkey PRIMARY KEY (runner_id);

CREATE INDEX attempts_finished ON waypost.attempts USING btree (finished_at) WHERE (finished_at IS NOT NULL);

CREATE INDEX run_events_by_run ON waypost.run_events USING btree (run_id, tx, id);

CREATE UNIQUE INDEX run_events_by_tx ON waypost.run_events USING btree (tx, id);

CREATE INDEX run_queue_running ON ONLY waypost.run_queue USING btree (queue_id, concurrency_key) WHERE (state = 'running'::text);

CREATE INDEX run_queue_0_queue_id_concurrency_key_idx ON waypost.run_queue_0 USING btree (queue_id, concurrency_key) WHERE (state = 'running'::text);

CREATE INDEX run_queue_ready_by_key ON ONLY waypost.run_queue USING btree (queue_id, concurrency_key, priority DESC, seq) WHERE (state = 'ready'::text);

CREATE INDEX run_queue_0_queue_id_concurrency_key_priority_seq_idx ON waypost.run_queue_0 USING btree (queue_id, concurrency_key, priority DESC, seq) WHERE (state = 'ready'::text);

CREATE INDEX run_queue_ready ON ONLY waypost.run_queue USING btree (queue_id, priority DESC, seq) WHERE (state = 'ready'::text);

CREATE INDEX run_queue_0_queue_id_priority_seq_idx ON waypost.run_queue_0 USING btree (queue_id, priority DESC, seq) WHERE (state = 'ready'::text);

CREATE UNIQUE INDEX run_queue_0_run_id ON waypost.run_queue_0 USING btree (run_id);

CREATE INDEX run_queue_1_queue_id_concurrency_key_idx ON waypost.run_queue_1 USING btree (queue_id, concurrency_key) WHERE (state = 'running'::text);

CREATE INDEX run_queue_1_queue_id_concurrency_key_priority_seq_idx ON waypost.run_queue_1 USING btree (queue_id, concurrency_key, priority DESC, seq) WHERE (state = 'ready'::text);

CREATE INDEX run_queue_1_queue_id_priority_seq_idx ON waypost.run_queue_1 USING btree (queue_id, priority DESC, seq) WHERE (state = 'ready'::text);

CREATE UNIQUE INDEX run_queue_1_run_id ON waypost.run_queue_1 USING btree (run_id);

CREATE INDEX run_replays_of ON waypost.run_replays USING btree (replay_of, requested_at);

CREATE INDEX run_ttls_due ON waypost.run_ttls USING btree (expires_at);

CREATE INDEX run_waits_by_token ON waypost.run_waits USING btree (token_id) WHERE (token_id IS NOT NULL);

CREATE INDEX run_waits_due ON waypost.run_waits USING btree (due_at) WHERE (due_at IS NOT NULL);

CREATE INDEX runs_by_parent ON waypost.runs USING btree (parent_run_id, seq) WHERE (parent_run_id IS NOT NULL);

CREATE INDEX runs_by_status ON waypost.runs USING btree (status, seq DESC);

CREATE INDEX runs_by_task ON waypost.runs USING btree (namespace, task, seq DESC);

CREATE INDEX runs_dead_lettered ON waypost.runs USING btree (finished_at DESC) WHERE (status = 'dead_lettered'::text);

CREATE INDEX runs_expirable ON waypost.runs USING btree (namespace, task, finished_at) WHERE ((finished_at IS NOT NULL) AND (status <> 'dead_lettered'::text));

CREATE UNIQUE INDEX runs_idempotency ON waypost.runs USING btree (namespace, task, idempotency_key) WHERE (idempotency_key IS NOT NULL);

CREATE INDEX runs_schedule_without_taskrun ON waypost.runs USING btree (created_at) WHERE ((source = 'schedule'::text) AND (taskrun_name IS NULL));

CREATE INDEX runs_taskrun_changes ON waypost.runs USING btree (updated_at) WHERE (taskrun_name IS NOT NULL);

CREATE INDEX schedules_due ON waypost.schedules USING btree (next_fire_at) WHERE ((NOT suspended) AND (next_fire_at IS NOT NULL));

CREATE INDEX wait_tokens_by_namespace ON waypost.wait_tokens USING btree (namespace, created_at DESC);

CREATE UNIQUE INDEX wait_tokens_idempotency ON waypost.wait_tokens USING btree (idempotency_scope, idempotency_key) WHERE (idempotency_key IS NOT NULL);

CREATE UNIQUE INDEX warm_runners_attempt ON waypost.warm_runners USING btree (run_id, claim_token) WHERE (state = 'busy'::text);

CREATE INDEX warm_runners_idle ON waypost.warm_runners USING btree (fingerprint, idle_since DESC) WHERE (state = 'idle'::text);

ALTER INDEX waypost.run_queue_running ATTACH PARTITION waypost.run_queue_0_queue_id_concurrency_key_idx;

ALTER INDEX waypost.run_queue_ready_by_key ATTACH PARTITION waypost.run_queue_0_queue_id_concurrency_key_priority_seq_idx;

ALTER INDEX waypost.run_queue_ready ATTACH PARTITION waypost.run_queue_0_queue_id_priority_seq_idx;

ALTER INDEX waypost.run_queue_running ATTACH PARTITION waypost.run_queue_1_queue_id_concurrency_key_idx;

ALTER INDEX waypost.run_queue_ready_by_key ATTACH PARTITION waypost.run_queue_1_queue_id_concurrency_key_priority_seq_idx;

ALTER INDEX waypost.run_queue_ready ATTACH PARTITION waypost.run_queue_1_queue_id_priority_seq_idx;

CREATE TRIGGER run_events_attempt_updated AFTER UPDATE ON waypost.attempts REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION waypost.run_events_attempt_updated();

CREATE TRIGGER run_events_checkpoint_inserted AFTER INSERT ON waypost.checkpoints REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION waypost.run_events_checkpoint_written();

CREATE TRIGGER run_events_checkpoint_updated AFTER UPDATE ON waypost.checkpoints REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION waypost.run_events_checkpoint_written();

CREATE TRIGGER run_events_previous_release_logs AFTER INSERT ON waypost.run_logs REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION waypost.run_events_previous_release_logs();

CREATE TRIGGER run_events_run_inserted AFTER INSERT ON waypost.runs REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION waypost.run_events_run_inserted();

CREATE TRIGGER run_events_run_updated AFTER UPDATE ON waypost.runs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION waypost.run_events_run_updated();

CREATE TRIGGER run_events_wake_readers AFTER INSERT ON waypost.run_events FOR EACH STATEMENT EXECUTE FUNCTION waypost.run_events_wake_readers();

CREATE TRIGGER run_queue_queue_id BEFORE INSERT ON waypost.run_queue FOR EACH ROW WHEN ((new.queue_id IS NULL)) EXECUTE FUNCTION waypost.run_queue_queue_id();

CREATE TRIGGER run_waits_child_ended AFTER UPDATE ON waypost.runs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION waypost.run_waits_child_ended();

ALTER TABLE ONLY waypost.attempts
    ADD CONSTRAINT attempts_run_id_fkey FOREIGN KEY (run_id) REFERENCES waypost.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.checkpoints
    ADD CONSTRAINT checkpoints_run_id_fkey FOREIGN KEY (run_id) REFERENCES waypost.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.run_events
    ADD CONSTRAINT run_events_run_id_fkey FOREIGN KEY (run_id) REFERENCES waypost.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.run_logs
    ADD CONSTRAINT run_logs_run_id_fkey FOREIGN KEY (run_id) REFERENCES waypost.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.run_replays
    ADD CONSTRAINT run_replays_replay_of_fkey FOREIGN KEY (replay_of) REFERENCES waypost.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.run_replays
    ADD CONSTRAINT run_replays_run_id_fkey FOREIGN KEY (run_id) REFERENCES waypost.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.run_ttls
    ADD CONSTRAINT run_ttls_run_id_fkey FOREIGN KEY (run_id) REFERENCES waypost.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.run_waits
    ADD CONSTRAINT run_waits_run_id_fkey FOREIGN KEY (run_id) REFERENCES waypost.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.run_waits
    ADD CONSTRAINT run_waits_token_id_fkey FOREIGN KEY (token_id) REFERENCES waypost.wait_tokens(id) ON DELETE SET NULL;

ALTER TABLE ONLY waypost.schedules
    ADD CONSTRAINT schedules_namespace_task_fkey FOREIGN KEY (namespace, task) REFERENCES waypost.tasks(namespace, name) ON DELETE CASCADE;

ALTER TABLE ONLY waypost.wait_tokens
    ADD CONSTRAINT wait_tokens_run_id_fkey FOREIGN KEY (run_id) REFERENCES waypost.runs(id) ON DELETE CASCADE;
