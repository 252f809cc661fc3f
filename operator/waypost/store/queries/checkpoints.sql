-- name: write_checkpoint
-- Stores a checkpoint of the current attempt. FOR SHARE holds the hot row so a
-- concurrent takeover waits for this write, and a superseded attempt finds no row
-- and writes nothing (it cannot overwrite its successor's checkpoint).
WITH current AS (
    SELECT run_id, attempt FROM run_queue
    WHERE run_id = :run_id AND claim_token = :claim_token AND state = 'running'
    FOR SHARE
)
INSERT INTO checkpoints (run_id, key, attempt, data, size_bytes)
SELECT run_id, :key, attempt, :data::jsonb, :size_bytes FROM current
ON CONFLICT (run_id, key) DO UPDATE
    SET data = excluded.data, attempt = excluded.attempt, size_bytes = excluded.size_bytes,
        seq = DEFAULT, created_at = now()
RETURNING key;

-- name: list_checkpoints
SELECT key, data, attempt, size_bytes, created_at FROM checkpoints
WHERE run_id = :run_id ORDER BY seq;

-- name: list_checkpoint_heads
-- A run's checkpoints without their data (the run page lists hundreds; a tree loads
-- its one checkpoint when opened).
SELECT key, attempt, size_bytes, created_at FROM checkpoints
WHERE run_id = :run_id ORDER BY seq;

-- name: get_checkpoint
-- One checkpoint of a run, with its data.
SELECT key, data, attempt, size_bytes, created_at FROM checkpoints
WHERE run_id = :run_id AND key = :key;

-- name: last_checkpoints
-- The newest checkpoint of each of the runs in :run_ids (the dead-letter page).
SELECT DISTINCT ON (run_id) run_id, key, attempt, size_bytes, created_at
FROM checkpoints WHERE run_id = ANY(:run_ids::uuid[])
ORDER BY run_id, seq DESC;

-- name: checkpoint_versions
-- The stored value and version (seq) of each (:run_ids[i], :keys[i]) pair that
-- exists: an event stream asked for checkpoint data looks them up once per batch.
SELECT c.run_id, c.key, c.seq, c.attempt, c.size_bytes, c.data
FROM unnest(:run_ids::uuid[], :keys::text[]) AS wanted (run_id, key)
JOIN checkpoints c ON c.run_id = wanted.run_id AND c.key = wanted.key;
