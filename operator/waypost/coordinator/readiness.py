"""What /readyz waits for besides the database: conditions the process registers.

``waypost dev`` holds readiness until its tasks are registered (a trigger before
that would get 404 unknown_task); the operator until a leader is known (the
dispatcher, scheduler and kopf handlers run only on the leader).
"""

from __future__ import annotations

from collections.abc import Callable

# Returns None when satisfied, else why not (said in the 503 answer).
Check = Callable[[], str | None]


class Readiness:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def hold(self, name: str, reason: str) -> None:
        """Not ready for ``reason`` until :meth:`release`."""
        self._checks[name] = lambda: reason

    def release(self, name: str) -> None:
        self._checks.pop(name, None)

    def unmet(self) -> dict[str, str]:
        """The conditions not met now, with their reasons."""
        found = {}
        for name, check in self._checks.items():
            reason = check()
            if reason is not None:
                found[name] = reason
        return found
