"""Exceptions of the task SDK.

Task code raises :class:`AbortRun` to fail a run without retrying it. The
others are raised *to* task code (or to the runner) by the SDK.

:class:`AttemptSuperseded` and :class:`RunCancelled` derive from
``BaseException`` on purpose, as ``asyncio.CancelledError`` does: they tell
the attempt to stop, and a task's broad ``except Exception:`` must not swallow
that and keep writing on behalf of an attempt that is no longer current.
"""

from __future__ import annotations


class AbortRun(Exception):
    """Raise from a task to fail the run at once, without any further retry.

    Use it for errors a retry cannot fix (bad input, a refused payment). The
    message is recorded as the run's error.
    """


class WaypostError(Exception):
    """Base class of errors raised by the SDK itself."""


class NotJSONSerializable(WaypostError, TypeError):
    """A step result, checkpoint or task result could not be encoded as JSON."""

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__(f"{what} must be JSON-serializable: {detail}")


class CheckpointTooLarge(WaypostError):
    """A checkpoint's JSON encoding is larger than the coordinator accepts."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        self.key = key
        self.size = size
        self.limit = limit
        super().__init__(
            f"checkpoint {key!r} is {size} bytes as JSON, over the limit of {limit} bytes"
        )


class ResultTooLarge(WaypostError):
    """A task result's JSON encoding is larger than the coordinator accepts."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"task result is {size} bytes as JSON, over the limit of {limit} bytes")


class WaypostAPIError(WaypostError):
    """The coordinator answered with an error document (a 4xx or 5xx status).

    ``code`` is the machine-readable ``error.code`` (``unknown_task``,
    ``too_large``, ...); ``message`` says what was wrong.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"HTTP {status} {code}: {message}")


class CoordinatorUnavailable(WaypostError):
    """The coordinator could not be reached, even after retrying."""


class AttemptSuperseded(BaseException):
    """The coordinator answered 409: this attempt is no longer the current one.

    Another attempt has taken over (this one's lease expired, or the run was
    finished elsewhere). Nothing this attempt writes will be accepted, so the
    runner stops at once and reports nothing more.
    """


class RunCancelled(BaseException):
    """The run was cancelled; the attempt stops without reporting a result."""


class Suspended(BaseException):
    """The run suspended to wait (a long sleep, a token, child runs): the attempt ends
    here, and the next attempt runs the task again from the top, passing through
    the steps and waits that ended. Raised out of the ``ctx`` wait methods; never
    catch it (like ``RunCancelled`` it is a ``BaseException`` for that reason)."""


class WaitTimeout(WaypostError):
    """``ctx.wait_for_token``: the token timed out before anyone completed it."""

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(f"wait token {token_id} timed out before it was completed")


class ChildRunFailed(WaypostError):
    """A child run of ``ctx.trigger_and_wait(..., raise_on_failure=True)`` did not
    succeed; ``run`` is its :class:`~waypost.sdk.context.ChildRun`."""

    def __init__(self, run: object, status: str, message: str) -> None:
        self.run = run
        self.status = status
        super().__init__(message)
