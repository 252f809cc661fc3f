-- A claim in one round trip. Until now a dispatcher's claim was a transaction of
-- six statements from the client (BEGIN, the acknowledgements of the previous
-- batch, SET LOCAL, the queue locks, the claim, COMMIT): with the client's event
-- loop between them, a claiming connection spent most of its time idle in
-- transaction, holding its row locks. The same statements now run inside the
-- server, in the one transaction of a single call; READ COMMITTED still gives
-- each statement of a PL/pgSQL function a new snapshot, so the claim counts
-- running runs after the queue locks are held, as before.
--
-- The bodies are the former named queries lock_claimable_queues and
-- claim_ready_runs, unchanged. Change them with a new migration
-- (CREATE OR REPLACE FUNCTION), never by editing this file.

-- The queues with ready runs. Queues with a limit (maxConcurrency or
-- perKeyConcurrency) are locked so that counts of running runs stay exact until
-- commit, even with two dispatchers; SKIP LOCKED lets a second dispatcher take
-- the queues the first is not holding. Queues without a limit are not locked
-- (locked = false): their runs are claimed row by row with SKIP LOCKED, so several
-- claimers work one queue in parallel. With a leader epoch, nothing is returned
-- unless it is still the current epoch; the shared lock on the leadership row
-- holds a new leader's epoch update back until this claim has committed.
-- The ready check is a scalar subquery with LIMIT 1, not EXISTS: Postgres turns an
-- EXISTS into a semi-join that reads every ready row of the queue (100,000 rows of
-- backlog cost 40 ms per claim); a scalar subquery stops at the first ready row.
-- enable_bitmapscan is off for the claim functions: when statistics are stale (a
-- burst after a quiet spell, before autoanalyze) the planner guesses a handful of
-- ready rows and picks a bitmap scan, which reads and sorts the whole backlog on
-- every claim (50 ms with 100,000 runs waiting); the index scan stops after
-- `limit` rows whatever the backlog.
CREATE FUNCTION lock_claimable_queues(p_leader_epoch bigint)
RETURNS TABLE (name text, locked boolean)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
SET search_path = waypost, pg_catalog
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH leader AS (
        SELECT p_leader_epoch IS NULL
               OR EXISTS (SELECT 1 FROM leadership l WHERE l.epoch = p_leader_epoch FOR SHARE)
               AS ok
    ), limited AS (
        SELECT queues.name FROM queues
        WHERE (max_concurrency IS NOT NULL OR per_key_concurrency IS NOT NULL)
          AND (SELECT ok FROM leader)
          AND (SELECT true FROM run_queue r WHERE r.queue = queues.name AND r.state = 'ready'
               AND r.available_at <= now() LIMIT 1)
        FOR UPDATE OF queues SKIP LOCKED
    )
    SELECT limited.name, true FROM limited
    UNION ALL
    SELECT queues.name, false FROM queues
    WHERE max_concurrency IS NULL AND per_key_concurrency IS NULL
      AND (SELECT ok FROM leader)
      AND (SELECT true FROM run_queue r WHERE r.queue = queues.name AND r.state = 'ready'
           AND r.available_at <= now() LIMIT 1);
END
$$;

-- Claims up to p_limit ready runs of the locked queues and the unlocked queues:
-- highest priority first, then oldest, never past a queue's maxConcurrency nor a
-- concurrencyKey's limit. An unlocked queue that gained a limit since
-- lock_claimable_queues is left for the next claim (its counts would not be
-- exact). Ready rows are taken with SKIP LOCKED, so parallel claimers of an
-- unlocked queue take different runs. Each claim draws a fencing token and a lease
-- from the database clock, and opens its attempt row, all in this one statement.
CREATE FUNCTION claim_ready_runs(
    p_locked text[], p_limit integer, p_lease_seconds double precision, p_worker text,
    p_unlocked text[])
RETURNS TABLE (run_id uuid, attempt integer, claim_token bigint,
               lease_expires_at timestamptz, namespace text, task text, spec jsonb,
               memory_bytes bigint, trace_id text, attempt_base integer,
               idempotency_key text, taskrun_name text)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
SET search_path = waypost, pg_catalog
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH limits AS (
        SELECT q.name, q.max_concurrency, q.per_key_concurrency,
               (SELECT count(*) FROM run_queue r
                WHERE r.queue = q.name AND r.state = 'running') AS running
        FROM queues q WHERE q.name = ANY(p_locked)
        UNION ALL
        SELECT q.name, NULL, NULL, 0 FROM queues q
        WHERE q.name = ANY(p_unlocked) AND q.max_concurrency IS NULL
          AND q.per_key_concurrency IS NULL
    ), running_keys AS (
        SELECT r.queue, r.concurrency_key, count(*) AS running
        FROM run_queue r JOIN limits l ON l.name = r.queue AND l.per_key_concurrency IS NOT NULL
        WHERE r.state = 'running' AND r.concurrency_key IS NOT NULL
        GROUP BY r.queue, r.concurrency_key
    ), candidates AS (
        -- Queues without a per-key limit: just the head of the ready index.
        SELECT c.run_id, c.queue, c.priority, c.seq
        FROM limits l CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue, r.priority, r.seq FROM run_queue r
            WHERE r.queue = l.name AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT greatest(0, least(p_limit, coalesce(l.max_concurrency - l.running, p_limit)))
            FOR UPDATE OF r SKIP LOCKED
        ) c
        WHERE l.per_key_concurrency IS NULL
        UNION ALL
        -- Queues with a per-key limit: rank each key's ready runs and keep only those
        -- that fit beside the key's running ones, so a key with a long backlog cannot
        -- take the places of the other keys.
        SELECT k.run_id, k.queue, k.priority, k.seq
        FROM (
            SELECT r.run_id, r.queue, r.concurrency_key, r.priority, r.seq,
                   l.per_key_concurrency,
                   row_number() OVER (PARTITION BY r.queue, r.concurrency_key
                                      ORDER BY r.priority DESC, r.seq) AS key_rank
            FROM limits l JOIN run_queue r ON r.queue = l.name
            WHERE l.per_key_concurrency IS NOT NULL AND r.state = 'ready'
              AND r.available_at <= now()
        ) k
        LEFT JOIN running_keys rk
               ON rk.queue = k.queue AND rk.concurrency_key = k.concurrency_key
        WHERE k.concurrency_key IS NULL
           OR k.key_rank + coalesce(rk.running, 0) <= k.per_key_concurrency
    ), admitted AS (
        SELECT c.run_id FROM (
            SELECT c.*, row_number() OVER (PARTITION BY c.queue
                                           ORDER BY c.priority DESC, c.seq) AS queue_rank
            FROM candidates c
        ) c JOIN limits l ON l.name = c.queue
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

-- complete_attempt for many attempts in one statement (batched acknowledgements),
-- each fenced on its own token; returns the runs that were still current.
CREATE FUNCTION complete_attempts(p_run_ids uuid[], p_tokens bigint[], p_results jsonb[])
RETURNS SETOF uuid
LANGUAGE plpgsql
SET search_path = waypost, pg_catalog
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

-- A dispatcher's whole claim in the caller's transaction (one statement in
-- autocommit: one round trip, one commit): first the acknowledgements of its
-- previous batch (rows with acked = true and only run_id set), then the lock step,
-- then the claim step (rows with acked = false). Acknowledging first frees the
-- places of finished runs before a limited queue's running runs are counted.
CREATE FUNCTION claim_runs(
    p_ack_run_ids uuid[], p_ack_tokens bigint[], p_ack_results jsonb[],
    p_limit integer, p_lease_seconds double precision, p_worker text, p_leader_epoch bigint)
RETURNS TABLE (acked boolean, run_id uuid, attempt integer, claim_token bigint,
               lease_expires_at timestamptz, namespace text, task text, spec jsonb,
               memory_bytes bigint, trace_id text, attempt_base integer,
               idempotency_key text, taskrun_name text)
LANGUAGE plpgsql
SET search_path = waypost, pg_catalog
AS $$
DECLARE
    v_locked text[];
    v_unlocked text[];
BEGIN
    IF cardinality(p_ack_run_ids) > 0 THEN
        RETURN QUERY
        SELECT true, c.id, NULL::integer, NULL::bigint, NULL::timestamptz, NULL::text,
               NULL::text, NULL::jsonb, NULL::bigint, NULL::text, NULL::integer, NULL::text,
               NULL::text
        FROM complete_attempts(p_ack_run_ids, p_ack_tokens, p_ack_results) AS c(id);
    END IF;
    SELECT coalesce(array_agg(q.name) FILTER (WHERE q.locked), '{}'),
           coalesce(array_agg(q.name) FILTER (WHERE NOT q.locked), '{}')
      INTO v_locked, v_unlocked
      FROM lock_claimable_queues(p_leader_epoch) q;
    IF cardinality(v_locked) = 0 AND cardinality(v_unlocked) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT false, c.* FROM claim_ready_runs(v_locked, p_limit, p_lease_seconds, p_worker,
                                            v_unlocked) c;
END
$$;
