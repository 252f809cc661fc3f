"""waypost: durable task execution for Kubernetes.

Task authors import from here: ``from waypost import task, Retry``.
"""

from waypost.sdk.decorator import Retry, task
from waypost.sdk.errors import AbortRun

__all__ = ["AbortRun", "Retry", "task"]
