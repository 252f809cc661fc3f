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
