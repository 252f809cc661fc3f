"""waypost: durable task execution for Kubernetes.

Task authors import from here: ``from waypost import task, Retry``.
"""

from waypost.sdk.decorator import Queue, Retry, Schedule, task
from waypost.sdk.errors import AbortRun

__all__ = ["AbortRun", "Queue", "Retry", "Schedule", "task"]
