-- Failure patterns (engine/insights.py). Each reads only the attempts that ended
-- since :since, through the attempts_finished index: the cost follows the window's
-- traffic, not the history. A few run ids per task come back as evidence.

-- name: timeout_loops
-- Tasks with at least :min_runs runs whose attempts timed out :min_attempts times
-- or more in the window (maxDuration hit again and again).
SELECT r.namespace, r.task, count(*) AS runs, max(x.timeouts) AS max_timeouts,
       (array_agg(x.run_id::text ORDER BY x.last DESC))[1:5] AS evidence
FROM (
    SELECT a.run_id, count(*) AS timeouts, max(a.finished_at) AS last
    FROM attempts a
    WHERE a.finished_at >= :since AND a.status = 'failed' AND a.error ->> 'type' = 'timeout'
    GROUP BY a.run_id
    HAVING count(*) >= :min_attempts
) x JOIN runs r ON r.id = x.run_id
GROUP BY r.namespace, r.task
HAVING count(*) >= :min_runs;

-- name: retry_storms
-- Tasks whose attempts failed at a share of at least :ratio in the window, over at
-- least :min_runs distinct runs, with the failures counted per error type.
WITH a AS (
    SELECT r.namespace, r.task, a.run_id, a.status, a.finished_at,
           coalesce(a.error ->> 'type', 'error') AS failure
    FROM attempts a JOIN runs r ON r.id = a.run_id
    WHERE a.finished_at >= :since AND a.status IN ('succeeded', 'failed')
), per_task AS (
    SELECT namespace, task, count(*) AS attempts,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(DISTINCT run_id) FILTER (WHERE status = 'failed') AS failed_runs,
           (array_agg(run_id::text ORDER BY finished_at DESC)
               FILTER (WHERE status = 'failed'))[1:5] AS evidence
    FROM a GROUP BY namespace, task
), per_type AS (
    SELECT namespace, task, jsonb_object_agg(failure, n) AS by_type
    FROM (SELECT namespace, task, failure, count(*) AS n FROM a WHERE status = 'failed'
          GROUP BY namespace, task, failure) t
    GROUP BY namespace, task
)
SELECT p.namespace, p.task, p.attempts, p.failed, p.failed_runs, p.evidence, t.by_type
FROM per_task p JOIN per_type t USING (namespace, task)
WHERE p.failed_runs >= :min_runs AND p.failed >= :ratio * p.attempts;

-- name: checkpoint_gaps
-- Attempts that ended in the window after running longer than :gap_seconds, with
-- the longest stretch without a checkpoint (the task's start, each checkpoint the
-- attempt wrote, its end) and, for a failed one, the stretch since its last
-- checkpoint, which its retry redoes. The task's start is its end less the time
-- its runner reported (task_seconds), or for an attempt killed before it reported,
-- when its runner fetched the attempt: a Pod's scheduling and start-up are no gap.
-- An attempt whose report may still be on its way (ended under 10 s ago) waits for
-- the next pass. Only attempts whose gap exceeds :gap_seconds come back.
SELECT r.namespace, r.task, a.run_id::text AS run_id, a.attempt, a.status,
       g.longest, g.tail
FROM attempts a
JOIN runs r ON r.id = a.run_id
CROSS JOIN LATERAL (
    SELECT greatest(a.started_at, coalesce(a.finished_at - make_interval(secs => a.task_seconds),
                                           a.runner_started_at, a.started_at)) AS task_start
) s
CROSS JOIN LATERAL (
    SELECT extract(epoch FROM max(t.ts - t.prev)) AS longest,
           extract(epoch FROM a.finished_at - max(t.ts) FILTER (WHERE t.ts < a.finished_at))
               AS tail
    FROM (
        SELECT p.ts, lag(p.ts) OVER (ORDER BY p.ts) AS prev
        FROM (
            SELECT s.task_start AS ts
            UNION ALL
            SELECT c.created_at FROM checkpoints c
            WHERE c.run_id = a.run_id AND c.attempt = a.attempt AND c.created_at > s.task_start
            UNION ALL
            SELECT a.finished_at
        ) p
    ) t
) g
WHERE a.finished_at >= :since
  AND (a.task_seconds IS NOT NULL OR a.finished_at < now() - interval '10 seconds')
  AND a.finished_at - a.started_at > make_interval(secs => :gap_seconds)
  AND g.longest > :gap_seconds
ORDER BY a.finished_at DESC
LIMIT :limit;

-- name: attempt_memory
-- Per task, the peak memory of attempts that ended in the window (an OOM kill
-- counts as reaching its limit), against the latest attempt's limit: p95, p99 and
-- max, and the trend of peaks over time (least squares, in bytes per second, with
-- its r², over a span of seconds), for attempts with a measured peak.
WITH m AS (
    SELECT r.namespace, r.task, a.run_id, a.finished_at, a.memory_bytes,
           coalesce(a.peak_memory_bytes,
                    CASE WHEN a.error ->> 'type' = 'oom' THEN a.memory_bytes END) AS peak
    FROM attempts a JOIN runs r ON r.id = a.run_id
    WHERE a.finished_at >= :since
)
SELECT namespace, task, count(*) AS attempts,
       (array_agg(memory_bytes ORDER BY finished_at DESC))[1] AS limit_bytes,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY peak) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY peak) AS p99,
       max(peak) AS max_peak,
       regr_slope(peak, extract(epoch FROM finished_at)) AS slope,
       regr_r2(peak, extract(epoch FROM finished_at)) AS r2,
       extract(epoch FROM max(finished_at) - min(finished_at)) AS span,
       (array_agg(run_id::text ORDER BY peak DESC))[1:5] AS evidence
FROM m WHERE peak IS NOT NULL
GROUP BY namespace, task;

-- name: warm_memory_growth
-- Memory growth across warm starts: per task, the warm runners retired in the window
-- because their resident memory after a run had grown past the pool's limit
-- (WAYPOST_WARM_MEMORY_GROWTH_MIB) over what it was after their first run: how
-- many, their largest growth and last RSS, the most runs one served; evidence: the
-- runs they served that ended in the window (attempts tagged 'warm:<runner>'),
-- newest first. warm_runners holds the live pool and the recently retired only;
-- the attempts are read through the index on their end (the window's traffic).
WITH grown AS (
    SELECT w.runner_id, w.namespace, w.task, w.runs_served,
           w.last_rss_bytes - w.first_rss_bytes AS growth, w.last_rss_bytes
    FROM warm_runners w
    WHERE w.retired_reason = 'memory_growth' AND w.retired_at >= :since
), served AS (
    SELECT g.namespace, g.task, a.run_id, max(a.finished_at) AS finished_at
    FROM grown g
    JOIN attempts a ON a.worker = 'warm:' || g.runner_id::text
    WHERE a.finished_at >= :since
    GROUP BY g.namespace, g.task, a.run_id
)
SELECT g.namespace, g.task, count(*) AS runners, max(g.growth) AS max_growth,
       max(g.last_rss_bytes) AS max_rss, max(g.runs_served) AS max_runs_served,
       coalesce((SELECT (array_agg(s.run_id::text ORDER BY s.finished_at DESC))[1:5]
                 FROM served s WHERE s.namespace = g.namespace AND s.task = g.task),
                '{}') AS evidence
FROM grown g
GROUP BY g.namespace, g.task;

-- name: step_memory
-- Per task and step, the peak memory the runner measured by the end of the step, in
-- attempts that ended in the window.
SELECT r.namespace, r.task, s.key AS step, count(*) AS attempts,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY s.value::bigint) AS p99,
       max(s.value::bigint) AS max_peak
FROM attempts a
JOIN runs r ON r.id = a.run_id
CROSS JOIN LATERAL jsonb_each_text(a.step_peaks) s
WHERE a.finished_at >= :since AND a.step_peaks IS NOT NULL
GROUP BY r.namespace, r.task, s.key
ORDER BY r.namespace, r.task, s.key;

-- name: record_attempt_usage
-- The runners' memory reports, many in one statement, each matched to its attempt by
-- claim token (unique per attempt, so a report cannot land on another attempt).
UPDATE attempts a
SET peak_memory_bytes = u.peak, step_peaks = u.steps, task_seconds = u.seconds
FROM unnest(:claim_tokens::bigint[], :run_ids::uuid[], :peaks::bigint[], :steps::jsonb[],
            :seconds::real[])
    AS u(claim_token, run_id, peak, steps, seconds)
WHERE a.claim_token = u.claim_token AND a.run_id = u.run_id;

-- name: record_runner_starts
-- Runners that fetched their attempt document, many in one statement (by claim token).
UPDATE attempts a SET runner_started_at = now()
FROM unnest(:claim_tokens::bigint[], :run_ids::uuid[]) AS u(claim_token, run_id)
WHERE a.claim_token = u.claim_token AND a.run_id = u.run_id AND a.runner_started_at IS NULL;

-- name: raise_insights
-- Upsert the patterns found by a detection pass: a new one (or one that had
-- cleared) starts now and is not announced yet; one still holding keeps its start.
INSERT INTO task_insights (namespace, task, pattern, details)
SELECT * FROM unnest(:namespaces::text[], :tasks::text[], :patterns::text[],
                     :details::jsonb[])
ON CONFLICT (namespace, task, pattern) DO UPDATE
SET details = excluded.details, updated_at = now(),
    since = CASE WHEN task_insights.cleared_at IS NULL THEN task_insights.since ELSE now() END,
    announced = CASE WHEN task_insights.cleared_at IS NULL THEN task_insights.announced END,
    cleared_at = NULL;

-- name: clear_insights
-- Patterns that held but were not found by this pass: they stopped. Cleared rows
-- are forgotten after :keep_seconds.
WITH cleared AS (
    UPDATE task_insights SET cleared_at = now(), updated_at = now()
    WHERE cleared_at IS NULL
      AND (namespace, task, pattern) NOT IN (
          SELECT * FROM unnest(:namespaces::text[], :tasks::text[], :patterns::text[]))
    RETURNING namespace, task, pattern
), forgotten AS (
    DELETE FROM task_insights
    WHERE cleared_at < now() - make_interval(secs => :keep_seconds)
)
SELECT namespace, task, pattern FROM cleared;

-- name: cleared_insight_tasks
-- Tasks with a pattern that stopped (cleared rows are kept a day): a new leader
-- looks at their Degraded condition once, since the pattern may have stopped
-- before it wrote anything (its predecessor set the condition True).
SELECT DISTINCT namespace, task
FROM task_insights
WHERE cleared_at IS NOT NULL;

-- name: active_insights
-- Patterns that hold now, of :namespace/:task when given.
SELECT namespace, task, pattern, since, updated_at, details
FROM task_insights
WHERE cleared_at IS NULL
  AND (:namespace::text IS NULL OR namespace = :namespace)
  AND (:task::text IS NULL OR task = :task)
ORDER BY namespace, task, pattern;

-- name: unannounced_insights
-- Patterns whose raising or clearing the operator has not told Kubernetes yet.
SELECT namespace, task, pattern, since, cleared_at, details
FROM task_insights
WHERE announced IS DISTINCT FROM CASE WHEN cleared_at IS NULL THEN 'raised' ELSE 'cleared' END
ORDER BY updated_at
LIMIT :limit;

-- name: mark_insight_announced
-- Records what the operator told Kubernetes, if the pattern is still in that state.
UPDATE task_insights SET announced = :announced
WHERE namespace = :namespace AND task = :task AND pattern = :pattern
  AND (cleared_at IS NULL) = (:announced = 'raised');
