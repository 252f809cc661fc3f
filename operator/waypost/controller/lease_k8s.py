"""The Lease store on the real API server (coordination.k8s.io/v1)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from waypost.controller.leader import LeaseConflict, LeaseRecord


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _micro(value: datetime | None) -> str | None:
    # MicroTime: RFC 3339 with microseconds.
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubernetesLeaseStore:
    """One Lease object, read and replaced with optimistic concurrency."""

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str) -> None:
        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name

    def _record(self, lease: Any) -> LeaseRecord:
        spec = lease.spec
        return LeaseRecord(
            holder=spec.holder_identity or None,
            lease_duration_seconds=int(spec.lease_duration_seconds or 0),
            acquire_time=_time(spec.acquire_time),
            renew_time=_time(spec.renew_time),
            transitions=int(spec.lease_transitions or 0),
            resource_version=lease.metadata.resource_version,
        )

    def _body(self, record: LeaseRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.resource_version:
            meta["resourceVersion"] = record.resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": record.holder,
                "leaseDurationSeconds": record.lease_duration_seconds,
                "acquireTime": _micro(record.acquire_time),
                "renewTime": _micro(record.renew_time),
                "leaseTransitions": record.transitions,
            },
        }

    async def get(self) -> LeaseRecord | None:
        try:
            lease = await asyncio.to_thread(self.api.read_namespaced_lease, self.name,
                                            self.namespace, _request_timeout=5)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._record(lease)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        try:
            lease = await asyncio.to_thread(self.api.create_namespaced_lease, self.namespace,
                                            self._body(record), _request_timeout=5)
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict("the lease was created by another replica") from None
            raise
        return self._record(lease)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        try:
            lease = await asyncio.to_thread(self.api.replace_namespaced_lease, self.name,
                                            self.namespace, self._body(record),
                                            _request_timeout=5)
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict("the lease changed since it was read") from None
            raise
        return self._record(lease)
