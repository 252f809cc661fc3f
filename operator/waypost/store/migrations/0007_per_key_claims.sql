-- Claims from queues with a per-key limit no longer rank every ready run of the
-- queue (row_number over the whole backlog: with 10,000 runs waiting over 100
-- keys, a claim cost about five times a plain one). Each key with ready runs is
-- found by a loose index scan and offers only the head of its own runs.
--
-- run_queue_ready_by_key serves both the key scan and each key's head, keyless
-- runs included (btree finds IS NULL as a range); it holds ready runs only, so a
-- claim (ready -> running) adds nothing to it.
CREATE INDEX run_queue_ready_by_key ON run_queue (queue, concurrency_key, priority DESC, seq)
    WHERE state = 'ready';

CREATE OR REPLACE FUNCTION claim_ready_runs(
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
    WITH RECURSIVE limits AS (
        SELECT q.name, q.max_concurrency, q.per_key_concurrency,
               (SELECT count(*) FROM run_queue r
                WHERE r.queue = q.name AND r.state = 'running') AS running
        FROM queues q WHERE q.name = ANY(p_locked)
        UNION ALL
        SELECT q.name, NULL, NULL, 0 FROM queues q
        WHERE q.name = ANY(p_unlocked) AND q.max_concurrency IS NULL
          AND q.per_key_concurrency IS NULL
    ), ready_keys AS (
        -- The distinct keys with ready runs of each per-key queue, one index probe
        -- per key (Postgres has no skip scan of its own).
        SELECT l.name AS queue,
               (SELECT r.concurrency_key FROM run_queue r
                WHERE r.queue = l.name AND r.state = 'ready' AND r.concurrency_key IS NOT NULL
                ORDER BY r.concurrency_key LIMIT 1) AS concurrency_key
        FROM limits l WHERE l.per_key_concurrency IS NOT NULL
        UNION ALL
        SELECT k.queue,
               (SELECT r.concurrency_key FROM run_queue r
                WHERE r.queue = k.queue AND r.state = 'ready'
                  AND r.concurrency_key > k.concurrency_key
                ORDER BY r.concurrency_key LIMIT 1)
        FROM ready_keys k WHERE k.concurrency_key IS NOT NULL
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
        -- Queues with a per-key limit: each key that has ready runs (found with a
        -- loose index scan, one probe per key) offers the head of its own ready
        -- runs, as many as fit beside its running ones; keyless runs are not
        -- limited by key. The admitted step then orders all of them, so the result
        -- is the same as ranking the whole backlog, at a cost that grows with the
        -- number of keys instead of the number of ready runs.
        SELECT c.run_id, c.queue, c.priority, c.seq
        FROM ready_keys k
        JOIN limits l ON l.name = k.queue
        LEFT JOIN running_keys rk
               ON rk.queue = k.queue AND rk.concurrency_key = k.concurrency_key
        CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue, r.priority, r.seq FROM run_queue r
            WHERE r.queue = k.queue AND r.concurrency_key = k.concurrency_key
              AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT greatest(0, least(p_limit, l.per_key_concurrency - coalesce(rk.running, 0)))
        ) c
        WHERE k.concurrency_key IS NOT NULL
        UNION ALL
        SELECT c.run_id, c.queue, c.priority, c.seq
        FROM limits l CROSS JOIN LATERAL (
            SELECT r.run_id, r.queue, r.priority, r.seq FROM run_queue r
            WHERE r.queue = l.name AND r.concurrency_key IS NULL
              AND r.state = 'ready' AND r.available_at <= now()
            ORDER BY r.priority DESC, r.seq
            LIMIT p_limit
        ) c
        WHERE l.per_key_concurrency IS NOT NULL
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
