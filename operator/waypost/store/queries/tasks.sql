-- name: upsert_task
-- Stores a Task definition and its queue's limits; returns whether it changed.
WITH queue AS (
    INSERT INTO queues (name, max_concurrency, per_key_concurrency)
    VALUES ($4, $7, $8)
    ON CONFLICT (name) DO UPDATE
        SET max_concurrency = excluded.max_concurrency,
            per_key_concurrency = excluded.per_key_concurrency,
            updated_at = now()
)
INSERT INTO tasks (namespace, name, spec, queue, memory_bytes, default_priority, generation)
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $9)
ON CONFLICT (namespace, name) DO UPDATE
    SET spec = excluded.spec,
        queue = excluded.queue,
        memory_bytes = excluded.memory_bytes,
        default_priority = excluded.default_priority,
        generation = excluded.generation,
        deleted_at = NULL,
        updated_at = now()
RETURNING namespace, name, spec, generation;

-- name: get_task
SELECT namespace, name, spec, generation FROM tasks
WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL;

-- name: list_tasks
-- Active tasks with their queue depth and running count, for status and the dashboard.
SELECT t.namespace, t.name, t.spec, t.generation, t.queue,
       coalesce(c.queued, 0) AS queued, coalesce(c.running, 0) AS running
FROM tasks t
LEFT JOIN (
    SELECT r.namespace, r.task,
           count(*) FILTER (WHERE q.state = 'ready') AS queued,
           count(*) FILTER (WHERE q.state = 'running') AS running
    FROM run_queue q JOIN runs r ON r.id = q.run_id
    GROUP BY r.namespace, r.task
) c ON c.namespace = t.namespace AND c.task = t.name
WHERE t.deleted_at IS NULL AND ($1::text IS NULL OR t.namespace = $1)
ORDER BY t.namespace, t.name;

-- name: delete_task
-- Marks a Task deleted; its queued and retrying runs are cancelled by cancel_task_runs.
UPDATE tasks SET deleted_at = now(), updated_at = now()
WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL
RETURNING name;
