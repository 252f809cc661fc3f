"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's algorithm.

Every replica serves the coordinator API; only the leader runs the controller,
the dispatcher, the scheduler and the pool manager. Expiry is judged by local
elapsed time since this replica last saw the lease record change, never by
comparing our clock with the renewTime another machine wrote. A leader that
cannot renew within the renew deadline stops its work, which (renew deadline <
lease duration) happens before any other replica may take the lease.

The lease's ``leaseTransitions`` is the leader epoch: the new leader stores it
in Postgres, and leader-only writes check it, so a frozen former leader that
wakes up changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from waypost import aiotime
from waypost.engine.clock import Clock

log = logging.getLogger("waypost.controller.leader")


class LeaseConflict(Exception):
    """The lease changed since we read it (resourceVersion mismatch) or already exists."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int
    resource_version: str | None = None

    def same_record(self, other: LeaseRecord | None) -> bool:
        """Equal apart from resourceVersion: what "the record changed" means."""
        return other is not None and replace(self, resource_version=None) == replace(
            other, resource_version=None
        )


class LeaseStore(Protocol):
    """Reads and writes one Lease object with optimistic concurrency."""

    async def get(self) -> LeaseRecord | None: ...

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        """Create it; LeaseConflict if it exists."""
        ...

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        """Replace it if its resourceVersion is still ``record.resource_version``."""
        ...


class InMemoryLeaseStore:
    """A LeaseStore shared by electors in one process, for unit tests."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self._version = 0

    async def get(self) -> LeaseRecord | None:
        return self.record

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        if self.record is not None:
            raise LeaseConflict("lease exists")
        return self._store(record)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        if self.record is None or self.record.resource_version != record.resource_version:
            raise LeaseConflict("resourceVersion changed")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self._version += 1
        self.record = replace(record, resource_version=str(self._version))
        return self.record


LeadershipCallback = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class ElectionTiming:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    jitter: float = 1.2  # client-go's JitterFactor for the acquire loop

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")


class LeaderElector:
    """Campaigns for the lease; calls ``on_started(epoch)`` / ``on_stopped(epoch)``."""

    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        clock: Clock,
        *,
        timing: ElectionTiming | None = None,
        on_started: LeadershipCallback | None = None,
        on_stopped: LeadershipCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.clock = clock
        self.timing = timing or ElectionTiming()
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.rng = rng or random.Random()
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # monotonic time when the record last changed
        self._last_renew: float | None = None
        self.epoch: int | None = None

    @property
    def is_leader(self) -> bool:
        """Leader, and within the renew deadline of the last successful renewal."""
        if self.epoch is None or self._last_renew is None:
            return False
        return self.clock.monotonic() - self._last_renew < self.timing.renew_deadline

    @property
    def leader_known(self) -> bool:
        """Some replica (this one or another) holds a lease that has not expired, as
        judged by local elapsed time since the record last changed."""
        if self.is_leader:
            return True
        record = self._observed
        if record is None or not record.holder:
            return False
        return self.clock.monotonic() < self._observed_at + record.lease_duration_seconds

    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's tryAcquireOrRenew. True when we hold the lease."""
        now = self.clock.now()
        mono = self.clock.monotonic()
        duration = int(self.timing.lease_duration)
        current = await self.store.get()
        if current is None:
            mine = LeaseRecord(self.identity, duration, now, now, 0)
            try:
                stored = await self.store.create(mine)
            except LeaseConflict:
                return False
            self._observe(stored, mono)
            return True
        if not current.same_record(self._observed):
            self._observe(current, mono)
        held_by_other = bool(current.holder) and current.holder != self.identity
        if held_by_other and self._observed_at + current.lease_duration_seconds > mono:
            return False  # someone else holds an unexpired lease
        if current.holder == self.identity:
            desired = replace(current, renew_time=now, lease_duration_seconds=duration)
        else:
            desired = replace(current, holder=self.identity, acquire_time=now, renew_time=now,
                              lease_duration_seconds=duration,
                              transitions=current.transitions + 1)
        try:
            stored = await self.store.update(desired)
        except LeaseConflict:
            return False
        self._observe(stored, mono)
        return True

    def _observe(self, record: LeaseRecord, mono: float) -> None:
        self._observed = record
        self._observed_at = mono

    async def step(self) -> None:
        """One iteration of the loop: campaign, or renew and step down when late."""
        timing = self.timing
        if self.epoch is None:
            if await self._attempt(timing.renew_deadline):
                assert self._observed is not None
                self.epoch = self._observed.transitions
                self._last_renew = self.clock.monotonic()
                log.info("became leader", extra={"identity": self.identity,
                                                 "epoch": self.epoch})
                if self.on_started is not None:
                    await self.on_started(self.epoch)
            return
        assert self._last_renew is not None
        remaining = timing.renew_deadline - (self.clock.monotonic() - self._last_renew)
        renewed = remaining > 0 and await self._attempt(remaining)
        if renewed:
            self._last_renew = self.clock.monotonic()
        elif self._observed is not None and self._observed.holder != self.identity:
            await self.step_down("another replica holds the lease")
        elif not self.is_leader:
            await self.step_down("renew deadline missed")

    async def _attempt(self, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), timeout)
        except (TimeoutError, LeaseConflict):
            return False
        except Exception as exc:  # the API server being away must not end the campaign
            log.warning("lease request failed: %s", exc)
            return False

    async def step_down(self, reason: str) -> None:
        epoch, self.epoch, self._last_renew = self.epoch, None, None
        if epoch is None:
            return
        log.warning("stopped leading", extra={"identity": self.identity, "epoch": epoch,
                                              "reason": reason})
        if self.on_stopped is not None:
            await self.on_stopped(epoch)

    def _pause(self) -> float:
        period = self.timing.retry_period
        if self.epoch is None:
            return period * (1 + self.rng.random() * (self.timing.jitter - 1))
        return period

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign and renew until ``stop``; then release the lease if we hold it."""
        while not stop.is_set():
            await self.step()
            await aiotime.sleep(self._pause(), stop)
        if self.epoch is not None:
            await self.release()

    async def release(self) -> None:
        """Give the lease up at shutdown so a successor need not wait for expiry."""
        current = await self.store.get()
        if current is not None and current.holder == self.identity:
            with contextlib.suppress(Exception):
                await self.store.update(replace(current, holder=None, lease_duration_seconds=1,
                                                renew_time=self.clock.now()))
        await self.step_down("released")
