-- The sampled flag of a trigger's W3C traceparent (trace-flags bit 0), kept with
-- the caller's span (parent_span_id, migration 0018): the parentbased_* samplers
-- (OTEL_TRACES_SAMPLER) follow the caller's decision for a run that has a caller,
-- and decide on the trace id only for a run that starts its own trace. NULL when
-- the run has no caller's span. Nullable without a default, so adding it rewrites
-- nothing; the previous release never reads it.
ALTER TABLE runs ADD COLUMN parent_sampled boolean
    CONSTRAINT runs_parent_sampled_check
    CHECK (parent_sampled IS NULL OR parent_span_id IS NOT NULL);
