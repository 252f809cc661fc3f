-- The claim functions run without JIT compilation. Migration 0008 prices
-- sequential scans out inside them (enable_seqscan = off adds 10^10 to the cost
-- of any sequential scan, including the one of the three-row queues table that
-- has no other path), which lifted the ready check's estimated cost far above
-- jit_above_cost: every claim then compiled its plan with LLVM, 365 ms of CPU
-- for a statement that runs in 0.1 ms (EXPLAIN ANALYZE in a benchmark drain).
-- These are short OLTP statements; JIT can only cost them time.
ALTER FUNCTION lock_claimable_queues(bigint) SET jit = off;
ALTER FUNCTION claim_ready_runs(text[], integer, double precision, text, text[]) SET jit = off;
ALTER FUNCTION claim_runs(uuid[], bigint[], jsonb[], integer, double precision, text, bigint)
    SET jit = off;
ALTER FUNCTION complete_attempts(uuid[], bigint[], jsonb[]) SET jit = off;
