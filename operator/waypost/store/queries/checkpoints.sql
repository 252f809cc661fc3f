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

-- name: last_checkpoints
-- The newest checkpoint of each of the runs in :run_ids (the dead-letter page).
SELECT DISTINCT ON (run_id) run_id, key, attempt, size_bytes, created_at
FROM checkpoints WHERE run_id = ANY(:run_ids::uuid[])
ORDER BY run_id, seq DESC;
