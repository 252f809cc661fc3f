-- name: ensure_signing_key
-- The first replica to start stores the key; every replica reads the same one.
WITH inserted AS (
    INSERT INTO signing_keys (id, key) VALUES (1, :key) ON CONFLICT (id) DO NOTHING
    RETURNING key
)
SELECT key FROM inserted UNION ALL SELECT key FROM signing_keys WHERE id = 1 LIMIT 1;
