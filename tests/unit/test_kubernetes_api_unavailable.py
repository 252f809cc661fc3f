"""Which errors of the Kubernetes client mean "the API server did not answer" (the
attempt is handed back) and which are answers (the attempt's failure)."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from waypost.backends import kubernetes_api
from waypost.engine.errors import BackendUnavailable


@pytest.mark.parametrize("exc", [
    ApiException(status=503, reason="Service Unavailable"),
    ApiException(status=429, reason="Too Many Requests"),  # storage (re)initializing
    ApiException(status=500, reason="Internal Server Error"),
    ApiException(status=0, reason="no answer"),
    urllib3.exceptions.MaxRetryError(None, "/api/v1/namespaces/a/pods",  # type: ignore[arg-type]
                                     reason=ConnectionRefusedError(111, "refused")),
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()),
    urllib3.exceptions.ReadTimeoutError(None, "/api", "read timed out"),  # type: ignore[arg-type]
    ConnectionRefusedError(111, "Connection refused"),
])
def test_no_answer_is_backend_unavailable(exc: Exception) -> None:
    mapped = kubernetes_api.unavailable(exc)
    assert isinstance(mapped, BackendUnavailable)
    assert "Kubernetes API" in mapped.message


@pytest.mark.parametrize("exc", [
    ApiException(status=422, reason="Unprocessable Entity"),
    ApiException(status=403, reason="Forbidden"),
    ApiException(status=404, reason="Not Found"),
    ApiException(status=409, reason="Conflict"),
    ValueError("bad body"),
])
def test_an_answer_is_not_an_outage(exc: Exception) -> None:
    assert kubernetes_api.unavailable(exc) is None


async def test_the_start_calls_raise_backend_unavailable_and_keep_real_answers() -> None:
    def refused(*_: Any) -> None:
        raise urllib3.exceptions.MaxRetryError(
            None, "/api/v1/namespaces/a/pods",  # type: ignore[arg-type]
            reason=urllib3.exceptions.NewConnectionError(None, "refused"))  # type: ignore[arg-type]

    def invalid(*_: Any) -> None:
        raise ApiException(status=422, reason="Unprocessable Entity")

    with pytest.raises(BackendUnavailable) as caught:
        await kubernetes_api._starting(refused, "a", {})
    assert isinstance(caught.value.__cause__, urllib3.exceptions.MaxRetryError)
    with pytest.raises(ApiException):
        await kubernetes_api._starting(invalid, "a", {})
    assert await kubernetes_api._starting(lambda *a: a, 1, 2) == (1, 2)
