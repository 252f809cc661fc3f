-- Warm runners (see migrations/0013_warm_runners.sql for the states).

-- name: warm_enroll
-- A runner started for an attempt (its first, cold) in warm mode: registered
-- busy with that attempt, so it is fenced like any later one.
INSERT INTO warm_runners (runner_id, namespace, task, fingerprint, state, run_id,
                          claim_token, idle_ttl_seconds)
VALUES (:runner_id, :namespace, :task, :fingerprint, 'busy', :run_id, :claim_token,
        :idle_ttl_seconds);

-- fragment: warm_runner_ended
-- The runner whose attempt ended (the CTE "ended": its id and whether its memory
-- grew past the limit) becomes idle, or retired for memory growth or a changed
-- spec; its memory after the run is recorded.
UPDATE warm_runners w SET
        state = CASE WHEN e.grown OR w.retire_after_run THEN 'retired' ELSE 'idle' END,
        retired_reason = CASE WHEN e.grown THEN 'memory_growth'
                              WHEN w.retire_after_run THEN 'spec_changed' END,
        retired_at = CASE WHEN e.grown OR w.retire_after_run THEN now() END,
        run_id = NULL, claim_token = NULL, idle_since = now(), last_seen_at = now(),
        runs_served = w.runs_served + 1,
        first_rss_bytes = coalesce(w.first_rss_bytes, :rss_bytes::bigint),
        last_rss_bytes = :rss_bytes::bigint
    FROM ended e WHERE w.runner_id = e.runner_id
    RETURNING w.*

-- name: warm_poll
-- A runner's poll. When it reports the attempt it was bound to (run
-- :finished_run, attempt number :finished_attempt) as finished and that attempt
-- is no longer current (the coordinator took its result or failure), it
-- becomes idle; or it is retired when its resident memory after the run
-- (:rss_bytes) exceeds what it was after its first run by more than
-- :growth_limit_bytes (a leak that would otherwise end in an OOM kill).
-- Returns the row as it is afterwards, and whether this poll ended the attempt.
WITH ended AS (
    SELECT w.runner_id,
           :rss_bytes::bigint - coalesce(w.first_rss_bytes, :rss_bytes::bigint)
               > :growth_limit_bytes::bigint AS grown
    FROM warm_runners w
    WHERE w.runner_id = :runner_id AND w.state = 'busy' AND w.run_id = :finished_run::uuid
      AND EXISTS (SELECT 1 FROM attempts a
                  WHERE a.run_id = w.run_id AND a.claim_token = w.claim_token
                    AND a.attempt = :finished_attempt::integer)
      AND NOT EXISTS (SELECT 1 FROM run_queue q
                      WHERE q.run_id = w.run_id AND q.claim_token = w.claim_token
                        AND q.state = 'running')
), finished AS (
    {warm_runner_ended}
), seen AS (
    -- A pre-warmed runner's first poll (never seen since it was registered, idle,
    -- nothing served): its idle time starts now, not while its Pod was starting.
    UPDATE warm_runners w SET last_seen_at = now(),
        idle_since = CASE WHEN w.state = 'idle' AND w.runs_served = 0
                               AND w.last_seen_at = w.registered_at
                          THEN now() ELSE w.idle_since END
    WHERE w.runner_id = :runner_id AND NOT EXISTS (SELECT 1 FROM ended)
    RETURNING w.*
)
SELECT runner_id, namespace, task, fingerprint, state, run_id, claim_token, runs_served,
       first_rss_bytes, last_rss_bytes, retired_reason, true AS finished_now FROM finished
UNION ALL
SELECT runner_id, namespace, task, fingerprint, state, run_id, claim_token, runs_served,
       first_rss_bytes, last_rss_bytes, retired_reason, false AS finished_now FROM seen;

-- name: warm_finish_poll
-- A runner's poll that carries its attempt's success (run :finished_run, claim
-- token :claim_token, attempt number :finished_attempt, result :result): the
-- completion and the runner's return to idle are one state change, so one
-- statement and one commit. The completion is complete_attempts' own (fenced on
-- the claim token, its run and attempt rows and events as for any success); the
-- runner becomes idle (or retired, as warm_poll says) only if that completion
-- was accepted. Returns the row as warm_poll does, and whether the result was
-- taken (false: the attempt was no longer current, and nothing but the poll's
-- time was recorded). Each warm success used to be two statements and two
-- commits (the completion, then the poll).
WITH done AS (
    SELECT run_id FROM complete_attempts(ARRAY[:finished_run::uuid], ARRAY[:claim_token::bigint],
                                         ARRAY[:result::jsonb]) AS run_id
), ended AS (
    SELECT w.runner_id,
           :rss_bytes::bigint - coalesce(w.first_rss_bytes, :rss_bytes::bigint)
               > :growth_limit_bytes::bigint AS grown
    FROM warm_runners w
    WHERE w.runner_id = :runner_id AND w.state = 'busy' AND w.run_id = :finished_run::uuid
      AND w.claim_token = :claim_token::bigint
      AND EXISTS (SELECT 1 FROM done)
      AND EXISTS (SELECT 1 FROM attempts a
                  WHERE a.run_id = w.run_id AND a.claim_token = w.claim_token
                    AND a.attempt = :finished_attempt::integer)
), finished AS (
    {warm_runner_ended}
), seen AS (
    UPDATE warm_runners w SET last_seen_at = now()
    WHERE w.runner_id = :runner_id AND NOT EXISTS (SELECT 1 FROM ended)
    RETURNING w.*
)
-- One row always (the completion is read whether or not the runner is still
-- registered); runner_id is null when it is not.
SELECT x.runner_id, x.namespace, x.task, x.fingerprint, x.state, x.run_id, x.claim_token,
       x.runs_served, x.first_rss_bytes, x.last_rss_bytes, x.retired_reason,
       coalesce(x.finished_now, false) AS finished_now, d.completed
FROM (SELECT count(*) > 0 AS completed FROM done) d
LEFT JOIN (
    SELECT runner_id, namespace, task, fingerprint, state, run_id, claim_token, runs_served,
           first_rss_bytes, last_rss_bytes, retired_reason, true AS finished_now FROM finished
    UNION ALL
    SELECT runner_id, namespace, task, fingerprint, state, run_id, claim_token, runs_served,
           first_rss_bytes, last_rss_bytes, retired_reason, false AS finished_now FROM seen
) x ON true;

-- name: warm_runner
-- One runner's registration, for a poll that waits for its assignment.
SELECT runner_id, namespace, task, fingerprint, state, run_id, claim_token, runs_served,
       first_rss_bytes, last_rss_bytes, retired_reason
FROM warm_runners WHERE runner_id = :runner_id;

-- name: warm_retire
-- Retire runners for a reason; only idle ones unless :busy_too (one that is gone:
-- its process or Pod ended, or its attempt was lost). Returns those retired.
UPDATE warm_runners SET state = 'retired', retired_reason = :reason, retired_at = now(),
                        run_id = NULL, claim_token = NULL
WHERE runner_id = ANY(:runner_ids::uuid[]) AND (state = 'idle' OR (:busy_too::boolean AND state = 'busy'))
RETURNING runner_id;

-- name: warm_retire_attempt
-- The runner bound to an attempt that was lost (no heartbeat) is retired with
-- it: a runner that stalled and wakes up gets 409 and takes nothing more.
UPDATE warm_runners SET state = 'retired', retired_reason = :reason, retired_at = now(),
                        run_id = NULL, claim_token = NULL
WHERE state = 'busy' AND run_id = :run_id AND claim_token = :claim_token
RETURNING runner_id;

-- name: warm_expire_idle
-- Idle runners past their idle TTL (on the database clock) are retired.
UPDATE warm_runners SET state = 'retired', retired_reason = 'idle_ttl', retired_at = now()
WHERE state = 'idle' AND idle_since < now() - make_interval(secs => idle_ttl_seconds)
RETURNING runner_id, namespace, task;

-- name: warm_members
-- Runners in the pool (idle or busy), for the pool manager, metrics and Task status.
SELECT runner_id, namespace, task, fingerprint, state, run_id, claim_token, runs_served,
       first_rss_bytes, last_rss_bytes, retired_reason,
       extract(epoch FROM now() - coalesce(idle_since, last_seen_at)) AS idle_seconds
FROM warm_runners WHERE state <> 'retired';

-- name: warm_prune
-- Forget retired runners after a while; their last poll has long been answered.
DELETE FROM warm_runners
WHERE state = 'retired' AND retired_at < now() - make_interval(secs => :older_than_seconds);

-- name: warm_retire_stale
-- A Task's spec changed: its idle runners of another fingerprint (an older
-- image, entrypoint, environment or memory) can never take its runs again, so
-- they retire now; busy ones retire when their run ends (retire_after_run).
WITH busy AS (
    UPDATE warm_runners SET retire_after_run = true
    WHERE namespace = :namespace AND task = :task AND state = 'busy'
      AND fingerprint <> ALL(:keep::text[])
)
UPDATE warm_runners SET state = 'retired', retired_reason = 'spec_changed', retired_at = now()
WHERE namespace = :namespace AND task = :task AND state = 'idle'
  AND fingerprint <> ALL(:keep::text[])
RETURNING runner_id;

-- name: warm_notify
-- Wakes a warm runner's poll held by another coordinator replica (each
-- replica LISTENs on waypost_warm); sent only when this replica holds no poll
-- of that runner.
SELECT pg_notify('waypost_warm', :runner_id::text);  -- see store/notify.py

-- name: warm_enroll_idle
-- A runner pre-warmed ahead of demand (engine/prewarm.py): registered idle,
-- with no attempt, so the dispatcher can bind one to it while it still imports
-- the task (its first poll then finds the assignment waiting).
INSERT INTO warm_runners (runner_id, namespace, task, fingerprint, state, idle_since,
                          idle_ttl_seconds)
VALUES (:runner_id, :namespace, :task, :fingerprint, 'idle', now(), :idle_ttl_seconds);

-- name: warm_demand
-- Pre-warming's signals: the spec of each active Task that has runs ready to be
-- claimed now (with how many: its queue depth) or that is among the Tasks run
-- lately (:namespaces and :tasks, paired).
WITH ready AS (
    SELECT r.namespace, r.task, count(*) AS ready
    FROM run_queue q JOIN runs r ON r.id = q.run_id
    WHERE q.state = 'ready' AND q.available_at <= now()
    GROUP BY r.namespace, r.task
), recent AS (
    SELECT k.namespace, k.task FROM unnest(:namespaces::text[], :tasks::text[]) AS k(namespace, task)
)
SELECT t.namespace, t.name AS task, t.spec::text AS spec, coalesce(d.ready, 0) AS ready
FROM tasks t
LEFT JOIN ready d ON d.namespace = t.namespace AND d.task = t.name
WHERE t.deleted_at IS NULL
  AND (d.ready IS NOT NULL
       OR EXISTS (SELECT 1 FROM recent k WHERE k.namespace = t.namespace AND k.task = t.name));

-- name: warm_assign_many
-- The warm hand-off of a whole claim batch, in one statement: the claimed
-- attempts (:run_ids, :claim_tokens, :fingerprints, in claim order) are paired
-- with idle runners of the same fingerprint among :candidates (the runners the
-- leader's backend keeps), the n-th attempt of a fingerprint with its n-th
-- most recently idle runner, each only while its attempt is still current.
-- Each pair is bound, tagged and leased as warm_assign does, and returned with
-- what the runner's attempt document needs (the run, its checkpoints), so the
-- poll that is woken answers without reading the store again.
WITH items AS (
    SELECT i.run_id, i.claim_token, i.fingerprint,
           row_number() OVER (PARTITION BY i.fingerprint ORDER BY i.ord) AS n
    FROM unnest(:run_ids::uuid[], :claim_tokens::bigint[], :fingerprints::text[])
         WITH ORDINALITY AS i(run_id, claim_token, fingerprint, ord)
    WHERE EXISTS (SELECT 1 FROM run_queue q
                  WHERE q.run_id = i.run_id AND q.claim_token = i.claim_token
                    AND q.state = 'running')
), free AS (
    -- SKIP LOCKED: a concurrent hand-off takes other runners.
    SELECT w.runner_id, w.fingerprint, w.idle_since FROM warm_runners w
    WHERE w.state = 'idle' AND w.runner_id = ANY(:candidates::uuid[])
      AND w.fingerprint = ANY(:fingerprints::text[])
    FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT f.runner_id, f.fingerprint,
           row_number() OVER (PARTITION BY f.fingerprint ORDER BY f.idle_since DESC) AS n
    FROM free f
), pairs AS (
    SELECT r.runner_id, i.run_id, i.claim_token
    FROM items i JOIN ranked r ON r.fingerprint = i.fingerprint AND r.n = i.n
), bound AS (
    UPDATE warm_runners w SET state = 'busy', run_id = p.run_id, claim_token = p.claim_token,
                              idle_since = NULL
    FROM pairs p WHERE w.runner_id = p.runner_id AND w.state = 'idle'
    RETURNING w.runner_id, w.run_id, w.claim_token,
              -- A pre-warmed runner that has not polled yet: its process or Pod is
              -- still starting (warm_poll's first-poll test).
              w.last_seen_at = w.registered_at AND w.runs_served = 0 AS unseen
), tagged AS (
    UPDATE attempts a SET worker = 'warm:' || b.runner_id::text
    FROM bound b WHERE a.run_id = b.run_id AND a.claim_token = b.claim_token
    RETURNING a.run_id
), leased AS (
    -- A runner that is up gets the heartbeat lease. One still starting keeps the
    -- claim's lease, the start timeout: starting a Pod or a process is not
    -- heartbeat time (its first heartbeat sets the heartbeat lease), and a
    -- pre-warmed Pod still being scheduled had its attempt declared lost after a
    -- heartbeat window on a busy node.
    UPDATE run_queue q SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
    FROM bound b WHERE q.run_id = b.run_id AND q.claim_token = b.claim_token
      AND NOT q.cancel_requested AND NOT b.unseen
    RETURNING q.run_id
)
SELECT b.runner_id, b.run_id, b.claim_token, q.attempt, r.namespace, r.task, r.spec::text AS spec,
       r.payload, r.trace_id, r.parent_sampled, r.idempotency_key,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'key', c.key, 'data', c.data, 'attempt', c.attempt,
                            'createdAt', c.created_at) ORDER BY c.seq)
                 FROM checkpoints c WHERE c.run_id = b.run_id), '[]'::jsonb) AS checkpoints,
       (SELECT count(*) FROM tagged) AS tagged, (SELECT count(*) FROM leased) AS leased
FROM bound b
JOIN run_queue q ON q.run_id = b.run_id AND q.claim_token = b.claim_token
JOIN runs r ON r.id = b.run_id;
