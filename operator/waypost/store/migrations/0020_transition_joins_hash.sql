-- The statement triggers that join a change's OLD and NEW transition tables
-- (status events of runs, attempt-finished events) plan that join without
-- nested loops. The planner has no statistics for a transition table and takes
-- it for one row, so it chose a nested loop: n² comparisons, a million for a
-- statement that changes 1,000 runs. In a waker pass that resumes 1,000 runs
-- it was 370 ms of 1.3 s (auto_explain of the trigger's INSERT in bench.waits);
-- hashed it is about a millisecond. The setting holds inside the function only.
ALTER FUNCTION run_events_run_updated() SET enable_nestloop = off;
ALTER FUNCTION run_events_attempt_updated() SET enable_nestloop = off;
