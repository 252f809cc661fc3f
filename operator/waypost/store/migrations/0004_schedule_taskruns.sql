-- In operator mode every scheduled run gets a TaskRun object, as a CronJob's
-- runs get Jobs. This finds the scheduled runs that do not have one yet.
CREATE INDEX runs_schedule_without_taskrun ON runs (created_at)
    WHERE source = 'schedule' AND taskrun_name IS NULL;
