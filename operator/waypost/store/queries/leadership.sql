-- name: record_leader_epoch
-- A new leader stores its epoch (the Lease's leaseTransitions). An older epoch
-- never replaces a newer one; no row back means a newer leader exists.
INSERT INTO leadership (singleton, epoch, holder) VALUES (true, :epoch, :holder)
ON CONFLICT (singleton) DO UPDATE
    SET epoch = excluded.epoch, holder = excluded.holder, updated_at = now()
    WHERE leadership.epoch <= excluded.epoch
RETURNING epoch;

-- name: current_leader
SELECT epoch, holder, updated_at FROM leadership WHERE singleton;
