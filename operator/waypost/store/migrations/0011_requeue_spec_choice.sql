-- A requeue from the dead-letter queue chooses the spec the next attempts run:
-- the Task's current one (the default: a fix deployed since, a new image or new
-- limits, is what a person requeues for) or the one stored when the run was
-- triggered. A run records which spec it runs:
-- * spec_generation: the Task's generation whose spec the run carries (NULL for
--   runs enqueued before this column existed);
-- * spec_choice: 'trigger' (the spec stored at trigger time, never replaced),
--   'current' or 'original' (what the last requeue chose);
-- * original: the trigger-time spec, memory limit and generation, kept by the
--   first requeue so that a later `--spec original` can go back to them.
--
-- Rolling upgrade (docs/migrations.md): additions with defaults only. A replica
-- of the previous release enqueues without spec_generation (NULL, as for older
-- runs) and requeues without a choice, as it always did (the stored spec).
ALTER TABLE runs ADD COLUMN spec_generation bigint;
ALTER TABLE runs ADD COLUMN spec_choice text NOT NULL DEFAULT 'trigger'
    CHECK (spec_choice IN ('trigger', 'current', 'original'));
ALTER TABLE runs ADD COLUMN original jsonb;
