-- name: store_health
-- What decides whether the hot table stays small: its dead tuples and size, and
-- the oldest snapshot in this database. While a transaction holds an old
-- snapshot (backend_xmin), vacuum cannot remove the rows finished runs left
-- behind, and every claim walks their index entries. Only backends of this
-- database count: vacuum of an ordinary table ignores the others.
SELECT coalesce((SELECT n_dead_tup FROM pg_stat_user_tables
                 WHERE schemaname = current_schema() AND relname = 'run_queue'), 0)
           AS hot_dead_tuples,
       coalesce((SELECT n_live_tup FROM pg_stat_user_tables
                 WHERE schemaname = current_schema() AND relname = 'run_queue'), 0)
           AS hot_live_tuples,
       pg_total_relation_size(to_regclass('run_queue')) AS hot_table_bytes,
       coalesce((SELECT extract(epoch FROM now() - min(xact_start))
                 FROM pg_stat_activity
                 WHERE datname = current_database() AND backend_xmin IS NOT NULL
                   AND pid <> pg_backend_pid()), 0)::float8 AS oldest_snapshot_seconds;

-- name: schema_version
-- The newest migration applied to this database (0 before the first).
SELECT coalesce(max(version), 0) FROM schema_migrations;

-- name: hot_table_dead_tuples
-- Dead tuples in run_queue as the cumulative statistics last saw them.
SELECT coalesce((SELECT n_dead_tup FROM pg_stat_user_tables
                 WHERE schemaname = current_schema() AND relname = 'run_queue'), 0);

-- name: vacuum_hot_table
-- Outside any transaction block (VACUUM refuses one). SKIP_LOCKED: if someone
-- holds a conflicting lock (an autovacuum already at it, a schema change), skip
-- this round instead of queueing behind them.
VACUUM (SKIP_LOCKED) run_queue;
