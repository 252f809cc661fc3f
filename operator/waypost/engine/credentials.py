"""Per-attempt credentials: an HMAC over (run, claim token) with the store's key.

A credential names exactly one attempt. It stays verifiable after the attempt is
superseded, which is how a stale runner gets a clear 409 instead of a 401.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

_PREFIX = "wpa"
# A warm runner's own credential: it may only poll for assignments, and each
# assignment brings the attempt's credential (the runner credential opens no
# attempt's data).
_RUNNER_PREFIX = "wpr"


class InvalidCredential(ValueError):
    pass


@dataclass(frozen=True)
class AttemptIdentity:
    run_id: uuid.UUID
    claim_token: int


@dataclass(frozen=True)
class CredentialSigner:
    key: bytes

    def _mac(self, run_id: uuid.UUID, claim_token: int) -> str:
        msg = f"{run_id.hex}.{claim_token}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def issue(self, run_id: uuid.UUID, claim_token: int) -> str:
        return f"{_PREFIX}.{run_id.hex}.{claim_token}.{self._mac(run_id, claim_token)}"

    def verify(self, token: str) -> AttemptIdentity:
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _PREFIX:
            raise InvalidCredential("malformed attempt credential")
        try:
            run_id = uuid.UUID(hex=parts[1])
            claim_token = int(parts[2])
        except ValueError:
            raise InvalidCredential("malformed attempt credential") from None
        if not hmac.compare_digest(parts[3], self._mac(run_id, claim_token)):
            raise InvalidCredential("attempt credential signature does not match")
        return AttemptIdentity(run_id, claim_token)

    def issue_runner(self, runner_id: uuid.UUID) -> str:
        """The credential of a warm runner (``POST /v1/runner/warm/poll``)."""
        mac = hmac.new(self.key, f"runner.{runner_id.hex}".encode(), hashlib.sha256).hexdigest()
        return f"{_RUNNER_PREFIX}.{runner_id.hex}.{mac}"

    def verify_runner(self, token: str) -> uuid.UUID:
        """The runner a warm-runner credential names; raises :class:`InvalidCredential`."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _RUNNER_PREFIX:
            raise InvalidCredential("malformed warm runner credential")
        try:
            runner_id = uuid.UUID(hex=parts[1])
        except ValueError:
            raise InvalidCredential("malformed warm runner credential") from None
        if not hmac.compare_digest(parts[2], self.issue_runner(runner_id).split(".")[2]):
            raise InvalidCredential("warm runner credential signature does not match")
        return runner_id
