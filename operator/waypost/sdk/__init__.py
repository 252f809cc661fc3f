"""The waypost task SDK: declare tasks, use the run context, trigger runs.

Task modules usually need only ``from waypost import task, Retry``; the
rest is here for type hints and for code that triggers runs.
"""

from waypost.sdk.client import RunHandle, WaypostClient
from waypost.sdk.context import Checkpoint, Context, Limits, SyncContext
from waypost.sdk.decorator import (
    FAILURE_TYPES,
    Queue,
    Retry,
    Task,
    TaskDefinition,
    registered_tasks,
    task,
)
from waypost.sdk.errors import (
    AbortRun,
    AttemptSuperseded,
    CheckpointTooLarge,
    CoordinatorUnavailable,
    NotJSONSerializable,
    ResultTooLarge,
    RunCancelled,
    WaypostAPIError,
    WaypostError,
)
from waypost.sdk.logger import TaskLogger
from waypost.sdk.quantity import parse_duration, parse_memory_quantity

__all__ = [
    "FAILURE_TYPES",
    "AbortRun",
    "AttemptSuperseded",
    "Checkpoint",
    "CheckpointTooLarge",
    "Context",
    "CoordinatorUnavailable",
    "Limits",
    "NotJSONSerializable",
    "Queue",
    "ResultTooLarge",
    "Retry",
    "RunCancelled",
    "RunHandle",
    "SyncContext",
    "Task",
    "TaskDefinition",
    "TaskLogger",
    "WaypostAPIError",
    "WaypostClient",
    "WaypostError",
    "parse_duration",
    "parse_memory_quantity",
    "registered_tasks",
    "task",
]
