-- Claims must never read run_queue sequentially. Once autoanalyze has seen a
-- large backlog (say half of 100,000 rows ready), the planner costs the ready
-- check ("is there a ready run in this queue?", LIMIT 1) as a sequential scan
-- that finds a match at once; but the heap of the hot table starts with the rows
-- of runs claimed or finished a moment ago, so each check read 1,000-4,500
-- buffers (8-17 ms, auto_explain in a benchmark drain) where the ready index
-- answers from its head. The checks now ask for the index's order, which the
-- planner can only get from the index, and the claim functions run with
-- sequential scans priced out (enable_seqscan = off still scans sequentially
-- where no index applies, as for the three-row queues table).

CREATE OR REPLACE FUNCTION lock_claimable_queues(p_leader_epoch bigint)
RETURNS TABLE (name text, locked boolean)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
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
               AND r.available_at <= now() ORDER BY r.priority DESC, r.seq LIMIT 1)
        FOR UPDATE OF queues SKIP LOCKED
    )
    SELECT limited.name, true FROM limited
    UNION ALL
    SELECT queues.name, false FROM queues
    WHERE max_concurrency IS NULL AND per_key_concurrency IS NULL
      AND (SELECT ok FROM leader)
      AND (SELECT true FROM run_queue r WHERE r.queue = queues.name AND r.state = 'ready'
           AND r.available_at <= now() ORDER BY r.priority DESC, r.seq LIMIT 1);
END
$$;

ALTER FUNCTION claim_ready_runs(text[], integer, double precision, text, text[])
    SET enable_seqscan = off;
