-- Runs triggered by a TaskRun object remember its name (its uid is the run's
-- idempotency key), so the operator can mirror the run into the TaskRun's status
-- and own the attempt's Pod by it.
ALTER TABLE runs ADD COLUMN taskrun_name text;

-- The status mirror reads "TaskRun runs changed since T" every second.
CREATE INDEX runs_taskrun_changes ON runs (updated_at) WHERE taskrun_name IS NOT NULL;
