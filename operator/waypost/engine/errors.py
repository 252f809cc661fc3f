"""Errors the engine raises, each with a stable code the API turns into a status."""

from __future__ import annotations


class EngineError(Exception):
    """Base of engine errors; ``code`` is stable, the message says what was wrong."""

    code = "engine_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownTask(EngineError):
    code = "unknown_task"
    status = 404


class RunNotFound(EngineError):
    code = "run_not_found"
    status = 404


class TooLarge(EngineError):
    code = "too_large"
    status = 413


class InvalidValue(EngineError):
    code = "invalid_value"
    status = 400


class InvalidBody(InvalidValue):
    """A request body that is not what its schema says as a whole (not an object)."""

    code = "invalid_body"


class UnprocessableContent(EngineError):
    """A well-formed request whose value cannot be used as the content it declares: a
    form field of JSON text (contentMediaType application/json, which a schema only
    annotates) that is not JSON, or JSON past the input boundary."""

    code = "invalid_content"
    status = 422


class UnsupportedMediaType(EngineError):
    code = "unsupported_media_type"
    status = 415


class AttemptSuperseded(EngineError):
    """The attempt is no longer current: a successor took over, or the run ended."""

    code = "attempt_superseded"
    status = 409


class IdempotencyConflict(EngineError):
    """The idempotency key belongs to a run that was triggered with other parameters."""

    code = "idempotency_conflict"
    status = 409

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class InvalidState(EngineError):
    code = "invalid_state"
    status = 409


class Unauthorized(EngineError):
    code = "unauthorized"
    status = 401


class StoreUnavailable(EngineError):
    code = "store_unavailable"
    status = 503


class BackendUnavailable(EngineError):
    """The execution backend's control plane (the Kubernetes API) did not answer, so an
    attempt could not be started: not the task's failure. The dispatcher hands the run
    back (ready again shortly, the attempt not counted) instead of failing it."""

    code = "backend_unavailable"
    status = 503


class TokenNotFound(EngineError):
    code = "token_not_found"
    status = 404


class TokenAlreadyCompleted(EngineError):
    """A second completion of a wait token: refused, nothing changes."""

    code = "token_already_completed"
    status = 409


class TokenTimedOut(EngineError):
    """Completing a token after its timeout: refused (its waiters resumed with a timeout)."""

    code = "token_timed_out"
    status = 409
