"""Task definitions written with the SDK decorator, as store/CRD Task specs."""

from __future__ import annotations

from typing import Any

from waypost.model.task import TaskDefinition, TaskSpec
from waypost.sdk.decorator import TaskDefinition as SdkTaskDefinition


def task_spec(sdk: SdkTaskDefinition, *, image: str | None = None) -> TaskSpec:
    """The Task spec equivalent to what ``@task(...)`` declared."""
    retry = sdk.retry
    oom: dict[str, Any] = {}
    if retry.oom_memory_multiplier is not None:
        oom["memoryMultiplier"] = retry.oom_memory_multiplier
    if retry.oom_memory_ceiling is not None:
        oom["memoryCeiling"] = retry.oom_memory_ceiling
    queue: dict[str, Any] = {
        "maxConcurrency": sdk.queue.max_concurrency,
        "perKeyConcurrency": sdk.queue.per_key_concurrency,
    }
    if sdk.queue.name:
        queue["name"] = sdk.queue.name
    spec: dict[str, Any] = {
        "entrypoint": sdk.entrypoint,
        "image": image,
        "resources": {"memory": sdk.memory},
        "retry": {
            "maxAttempts": retry.max_attempts,
            "backoff": {"initialSeconds": retry.initial_delay, "factor": retry.factor,
                        "maxSeconds": retry.max_delay, "jitter": retry.jitter},
            "retryOn": list(retry.retry_on),
            "oom": oom,
        },
        "queue": queue,
    }
    if sdk.timeout_seconds is not None:
        spec["timeout"] = {"maxDuration": f"{sdk.timeout_seconds:g}s"}
    return TaskSpec.model_validate(spec)


def task_definition(
    sdk: SdkTaskDefinition, *, namespace: str = "default", image: str | None = None
) -> TaskDefinition:
    return TaskDefinition(namespace=namespace, name=sdk.id, spec=task_spec(sdk, image=image))
