-- name: store_health
-- What decides whether the hot table stays small: its dead tuples and size, and
-- the oldest snapshot in this database. While a transaction holds an old
-- snapshot (backend_xmin), vacuum cannot remove the rows finished runs left
-- behind, and every claim walks their index entries until the leader rotates the
-- table (engine/hot_table.py). Only backends of this database count: vacuum of an
-- ordinary table ignores the others. run_queue is partitioned (migration 0019):
-- its figures are the sums over its partitions (the parent itself has none).
WITH hot AS (
    SELECT coalesce(sum(s.n_dead_tup), 0) AS dead, coalesce(sum(s.n_live_tup), 0) AS live,
           coalesce(sum(pg_total_relation_size(p.relid)), 0) AS bytes
    FROM pg_partition_tree(to_regclass('run_queue')) p
    LEFT JOIN pg_stat_user_tables s ON s.relid = p.relid
    WHERE p.isleaf
)
SELECT hot.dead AS hot_dead_tuples, hot.live AS hot_live_tuples, hot.bytes AS hot_table_bytes,
       coalesce((SELECT extract(epoch FROM now() - min(xact_start))
                 FROM pg_stat_activity
                 WHERE datname = current_database() AND backend_xmin IS NOT NULL
                   AND pid <> pg_backend_pid()), 0)::float8 AS oldest_snapshot_seconds
FROM hot;

-- name: schema_version
-- The newest migration applied to this database (0 before the first).
SELECT coalesce(max(version), 0) FROM schema_migrations;

-- name: hot_table_tuples
-- Dead and live tuples of run_queue's partitions as the cumulative statistics
-- last saw them: whether the leader should clean the table, and whether by
-- rotation (few live rows to copy) or by vacuum.
SELECT coalesce(sum(s.n_dead_tup), 0)::bigint AS dead,
       coalesce(sum(s.n_live_tup), 0)::bigint AS live
FROM pg_partition_tree(to_regclass('run_queue')) p
JOIN pg_stat_user_tables s ON s.relid = p.relid
WHERE p.isleaf;

-- name: vacuum_hot_table
-- Outside any transaction block (VACUUM refuses one). SKIP_LOCKED: if someone
-- holds a conflicting lock (an autovacuum already at it, a schema change), skip
-- this round instead of queueing behind them. On the partitioned table it
-- vacuums each partition.
VACUUM (SKIP_LOCKED) run_queue;

-- name: rotate_hot_table
-- Empties run_queue's dead row versions by rotation (migration 0019): NULL when
-- the old generation stayed locked for :lock_timeout_ms. The statistics of this
-- session (the truncation zeroes the old partition's counts) are flushed as soon
-- as it is idle, so that the next check does not see the old dead tuples again.
SELECT rotate_hot_table(:lock_timeout_ms) AS moved,
       (SELECT pg_stat_force_next_flush()) IS NULL AS flushed;
