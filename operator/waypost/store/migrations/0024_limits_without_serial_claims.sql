-- Queue limits that do not bind no longer make claims serial, and a per-key limit
-- no longer walks every key at every claim.
--
-- Until now every claim locked the row of each queue with a limit (FOR UPDATE
-- SKIP LOCKED) so that its count of running runs stayed exact until commit. A
-- second claimer skipped the queue and came back empty: with a maxConcurrency of
-- 100,000 and four claimers, the drain ran 59.5% slower than without a limit. A
-- per-key limit also found every key with ready runs (a loose index scan) and took
-- each key's head (one index probe per key) before it kept `limit` of them: over
-- 100 keys the drain ran 363% slower.
--
-- Gates. A queue with a limit is now claimed under advisory transaction locks (no
-- row is locked, no WAL is written, PgBouncer's transaction mode keeps them):
--   * exclusive: the queue's gate lock, exclusively. No one else claims from the
--     queue until commit, and the counts are exact, as before;
--   * lane: the gate lock shared, plus one of 4 lane locks. Up to 4 claimers work
--     the queue at once. Each may admit at most 50 runs of the queue, and leaves
--     room for the 3 other lanes' 50: it admits a run only when
--         running + its rank + 3 * 50 <= the limit      (queue, and each key)
--     which is exact whatever the others do before they commit. Proof: take the
--     claim statement with the latest snapshot among those whose runs are running
--     at a given moment; every other one either committed before that snapshot
--     (its runs are in that statement's count) or was in flight then, holding
--     another lane (an exclusive one cannot overlap a lane), so at most 3 others of
--     at most 50 runs each.
-- claim_gates picks lane mode when the limit is far: running + 4 * 50 <= the limit
-- (for a per-key limit, the most running in any one key). Near the limit, or with
-- a small limit, it picks the exclusive gate. Every lock is a try-lock: a claimer
-- never waits, it skips the queue (as SKIP LOCKED did) and no deadlock can form.
-- The counts that decide the mode are read before the locks and only choose the
-- mode; the counts that admit are read by the next statement, after them.
--
-- Heads first. admit_heads takes each queue's ready runs in priority and age
-- order and keeps those within the queue's and each key's limit, counting the
-- running runs of the candidates' keys only (at most `limit` index probes). When
-- a per-key limit refuses some of them in exclusive mode and the claim is not
-- full, admit_by_key walks the keys as before (other keys' runs must not wait
-- behind one key's backlog). A limit that does not bind never gets there.
--
-- start_claimed is the write of a claim (the hot rows running with a fencing
-- token and lease, the run rows started, the attempt rows opened), shared by both
-- admissions.
--
-- Rolling upgrade (docs/migrations.md): claim_runs keeps its signature; the
-- previous release calls it and runs this body from now on. lock_claimable_queues
-- and claim_ready_runs stay, unused, for one release. A claim of the previous body
-- that is still running when this migration commits locks queue rows that the new
-- claimers do not look at; for that one statement's time, a queue's limit can be
-- exceeded by what that claim admits.
--
-- The lock keys: pg_*_advisory_xact_lock(int, int) with (2003828736, queue id)
-- for the gate and (2003828737 + lane, queue id) for lanes 0-3. The int pair is
-- a key space apart from the bigint key of the migration lock. Another schema of
-- waypost in the same database shares the keys; that costs some skipped claims,
-- never an over-admission (a lane is still held by one claimer at a time).

CREATE FUNCTION claim_gates(p_leader_epoch bigint, p_limit integer)
RETURNS TABLE (queue_id integer, reserve integer, cap integer, by_key boolean)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
SET search_path = waypost, pg_catalog
AS $$
#variable_conflict use_column
-- One row per queue with ready runs that this claim may take from: reserve NULL
-- for a queue without limits (admit_heads checks it still has none), 0 with the
-- exclusive gate, 3 * 50 with a lane; cap is the most this claim admits from it;
-- by_key when admit_by_key may have to walk its keys (exclusive, per-key limit).
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

CREATE FUNCTION admit_heads(p_queues integer[], p_reserve integer[], p_cap integer[],
                            p_limit integer)
RETURNS SETOF uuid
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
SET search_path = waypost, pg_catalog
AS $$
#variable_conflict use_column
-- The heads of each gated queue, in priority and age order, within the queue's
-- limit and each key's; the candidates are locked (SKIP LOCKED), so lanes of one
-- queue, and claims of a queue without limits, take different runs.
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

CREATE FUNCTION admit_by_key(p_queues integer[], p_limit integer)
RETURNS SETOF uuid
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
SET search_path = waypost, pg_catalog
AS $$
#variable_conflict use_column
-- Queues with a per-key limit held with the exclusive gate: each key with ready
-- runs (a loose index scan over run_queue_ready_by_key) offers its head up to its
-- own limit, keyless runs theirs, and the queue's limit ranks them all.
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

CREATE FUNCTION start_claimed(p_run_ids uuid[], p_lease_seconds double precision,
                              p_worker text)
RETURNS TABLE (run_id uuid, attempt integer, claim_token bigint,
               lease_expires_at timestamptz, namespace text, task text, spec jsonb,
               memory_bytes bigint, trace_id text, attempt_base integer,
               idempotency_key text, taskrun_name text)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
SET search_path = waypost, pg_catalog
AS $$
#variable_conflict use_column
-- The admitted runs' hot rows go running with a fresh fencing token and lease,
-- their run rows are started and their attempts opened; returned in the order of
-- p_run_ids (the admission's: priority, then age).
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

CREATE OR REPLACE FUNCTION claim_runs(
    p_ack_run_ids uuid[], p_ack_tokens bigint[], p_ack_results jsonb[], p_limit integer,
    p_lease_seconds double precision, p_worker text, p_leader_epoch bigint)
RETURNS TABLE (acked boolean, run_id uuid, attempt integer, claim_token bigint,
               lease_expires_at timestamptz, namespace text, task text, spec jsonb,
               memory_bytes bigint, trace_id text, attempt_base integer,
               idempotency_key text, taskrun_name text)
LANGUAGE plpgsql
SET jit = off
SET search_path = waypost, pg_catalog
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
