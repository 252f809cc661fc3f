-- name: upsert_task
-- Stores a Task definition and the limits of its queue, which is keyed by the
-- Task's namespace and the queue name: Tasks of one namespace naming the same
-- queue share its limits, Tasks of two namespaces never do.
WITH queue AS (
    INSERT INTO queues (namespace, name, max_concurrency, per_key_concurrency)
    VALUES (:namespace, :queue, :max_concurrency, :per_key_concurrency)
    ON CONFLICT (namespace, name) DO UPDATE
        SET max_concurrency = excluded.max_concurrency,
            per_key_concurrency = excluded.per_key_concurrency,
            updated_at = now()
)
INSERT INTO tasks (namespace, name, spec, queue, memory_bytes, default_priority, generation,
                   retain_seconds)
VALUES (:namespace, :name, :spec::jsonb, :queue, :memory_bytes, :default_priority,
        :generation, :retain_seconds)
ON CONFLICT (namespace, name) DO UPDATE
    SET spec = excluded.spec,
        retain_seconds = excluded.retain_seconds,
        queue = excluded.queue,
        memory_bytes = excluded.memory_bytes,
        default_priority = excluded.default_priority,
        generation = excluded.generation,
        deleted_at = NULL,
        updated_at = now()
RETURNING namespace, name, spec, generation;

-- name: get_task
SELECT namespace, name, spec, generation FROM tasks
WHERE namespace = :namespace AND name = :name AND deleted_at IS NULL;

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
WHERE t.deleted_at IS NULL AND (:namespace::text IS NULL OR t.namespace = :namespace)
ORDER BY t.namespace, t.name;

-- name: delete_task
-- Marks a Task deleted; its queued and retrying runs are cancelled by cancel_task_runs.
UPDATE tasks SET deleted_at = now(), updated_at = now()
WHERE namespace = :namespace AND name = :name AND deleted_at IS NULL
RETURNING name;
