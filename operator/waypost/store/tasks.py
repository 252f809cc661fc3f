"""Task definitions as the store keeps them."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from waypost.model.task import TaskDefinition, TaskSpec
from waypost.store.sql import bind


@dataclass(frozen=True)
class TaskSummary:
    definition: TaskDefinition
    queue: str
    queued: int
    running: int


def _definition(r: asyncpg.Record) -> TaskDefinition:
    return TaskDefinition(
        namespace=r["namespace"], name=r["name"], generation=r["generation"],
        spec=TaskSpec.model_validate(r["spec"]),
    )


async def upsert(db: asyncpg.Pool | asyncpg.Connection, task: TaskDefinition) -> None:
    spec = task.spec
    await db.fetchrow(
        *bind("upsert_task", namespace=task.namespace, name=task.name,
              spec=spec.stored(),
              queue=spec.queue_name(task.name), memory_bytes=spec.memory_bytes,
              default_priority=spec.queue.default_priority,
              max_concurrency=spec.queue.max_concurrency,
              per_key_concurrency=spec.queue.per_key_concurrency, generation=task.generation,
              retain_seconds=spec.history.retain_seconds)
    )


async def get(
    db: asyncpg.Pool | asyncpg.Connection, namespace: str, name: str
) -> TaskDefinition | None:
    r = await db.fetchrow(*bind("get_task", namespace=namespace, name=name))
    return None if r is None else _definition(r)


async def list_tasks(
    db: asyncpg.Pool | asyncpg.Connection, namespace: str | None = None
) -> list[TaskSummary]:
    rows = await db.fetch(*bind("list_tasks", namespace=namespace))
    return [TaskSummary(_definition(r), r["queue"], r["queued"], r["running"]) for r in rows]


async def delete(db: asyncpg.Pool | asyncpg.Connection, namespace: str, name: str) -> bool:
    return await db.fetchrow(*bind("delete_task", namespace=namespace, name=name)) is not None
