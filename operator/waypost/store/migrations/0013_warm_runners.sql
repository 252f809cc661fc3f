-- Warm runners: runner processes or Pods that stay alive after an attempt and
-- long-poll for the next attempt of the same task and spec fingerprint.
-- A row is a runner's registration. Its state moves
--   busy (bound to one attempt: run_id + claim_token) -> idle -> busy -> ... -> retired
-- and every move is one fenced statement, so a runner holds at most one attempt
-- and an attempt is bound to at most one runner. Retired rows stay for a while
-- (their reason answers the runner's next poll) and are pruned by the leader.
CREATE TABLE warm_runners (
    runner_id uuid PRIMARY KEY,
    namespace text NOT NULL,
    task text NOT NULL,
    fingerprint text NOT NULL,
    state text NOT NULL CHECK (state IN ('idle', 'busy', 'retired')),
    run_id uuid,
    claim_token bigint,
    idle_ttl_seconds double precision NOT NULL CHECK (idle_ttl_seconds > 0),
    runs_served integer NOT NULL DEFAULT 0,
    first_rss_bytes bigint,
    last_rss_bytes bigint,
    retired_reason text,
    -- Set when the Task's spec changed while it ran: it retires when its run ends.
    retire_after_run boolean NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    idle_since timestamptz,
    retired_at timestamptz,
    CHECK ((state = 'busy') = (run_id IS NOT NULL AND claim_token IS NOT NULL))
);

-- The dispatcher's lookup: an idle runner of this fingerprint, most recently idle
-- first (so the others age out by their idle TTL and the pool scales down).
CREATE INDEX warm_runners_idle ON warm_runners (fingerprint, idle_since DESC)
    WHERE state = 'idle';
-- An attempt is bound to at most one runner.
CREATE UNIQUE INDEX warm_runners_attempt ON warm_runners (run_id, claim_token)
    WHERE state = 'busy';
