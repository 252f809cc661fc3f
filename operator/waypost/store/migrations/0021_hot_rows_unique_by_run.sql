-- Claims found their hot rows by walking the ready index (migration 0019's
-- regression). 0019 had to give the partitioned run_queue the primary key
-- (run_id, generation): a primary key of a partitioned table must contain the
-- partition key. On that index `run_id = x` is not known to match one row, and
-- the generic plan of claim_ready_runs then joined the admitted runs to
-- run_queue through run_queue_ready instead, reading every ready row for each
-- claimed one (measured: 28,000 rows and 86 ms for a claim of 10 from a backlog
-- of 30,000; 0.7 ms with this migration).
--
-- So each generation gets a unique index on run_id alone, which the planner
-- trusts, and the partitioned primary key goes: it was only a second index per
-- partition to write at every insert and non-HOT update. A run is still in at most
-- one row per partition; the rotation moves rows under the table lock.
--
-- Rolling upgrade (docs/migrations.md): no statement names the key or the
-- indexes. The indexes are built inside the migration's transaction, holding
-- run_queue's lock for as long as it takes to index the active runs (ms).
ALTER TABLE run_queue DROP CONSTRAINT run_queue_pkey;
CREATE UNIQUE INDEX run_queue_0_run_id ON run_queue_0 (run_id);
CREATE UNIQUE INDEX run_queue_1_run_id ON run_queue_1 (run_id);
