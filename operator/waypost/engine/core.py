"""The engine's shared state: the store pool, settings, credential signer and clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from waypost.engine.clock import Clock, SystemClock
from waypost.engine.completions import CompletionBatcher
from waypost.engine.credentials import CredentialSigner
from waypost.engine.heartbeat_lag import HeartbeatLag
from waypost.engine.metrics import RunMetrics
from waypost.engine.usage import UsageRecorder
from waypost.engine.warm import WarmHub
from waypost.model.settings import Settings
from waypost.store import insights, keys, migrate, runs
from waypost.store import pool as store_pool

#: The leader epoch of a process that stopped leading. Epochs are a Lease's
#: leaseTransitions (0 or more), and the stored one only grows, so no fenced
#: statement (claims, wake-ups, schedule firing) matches it. ``None`` would mean
#: "no fence" and let a loop still winding down claim as if it led.
DEPOSED_EPOCH = -1


@dataclass
class Engine:
    """What every engine operation needs; made once per process by ``open``."""

    pool: asyncpg.Pool
    settings: Settings
    signer: CredentialSigner
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    # Set while this process leads (operator mode); leader-only writes check it.
    # None: no fence (dev mode and tests, one process); DEPOSED_EPOCH once it stopped
    # leading, so that a leader-only write still in flight changes nothing.
    leader_epoch: int | None = None
    # Successful completions of concurrent runners share statements and commits.
    completions: CompletionBatcher = field(init=False)
    # Warm runners: waiting polls, run rates, hit/miss counters.
    warm: WarmHub = field(init=False)
    # Counters and histograms, fed by the leader from the event log (engine.telemetry).
    metrics: RunMetrics = field(init=False)
    # Runners' memory reports, written in the background (engine.usage).
    usage: UsageRecorder = field(init=False)
    # How long heartbeats take to be recorded here: the reaper's allowance for it.
    heartbeat_lag: HeartbeatLag = field(init=False)

    # Called when this process queued runs that are claimable now (the dispatcher's
    # wake-up, when it runs in this process): NOTIFY reaches it too, but only after
    # another server process forwards it, a hop on the latency of every trigger.
    ready_listeners: list[Callable[[], None]] = field(init=False, default_factory=list)

    def runs_ready(self) -> None:
        """Runs this process queued can be claimed now."""
        for listener in self.ready_listeners:
            listener()

    def __post_init__(self) -> None:
        pool = self.pool
        self.metrics = RunMetrics(self.settings.metrics_max_tasks)
        self.usage = UsageRecorder(lambda reports: insights.record_usage(pool, reports))
        self.completions = CompletionBatcher(lambda acks: runs.complete_many(pool, acks))
        self.warm = WarmHub(self)
        self.heartbeat_lag = HeartbeatLag(self.clock)

    @classmethod
    async def open(
        cls, settings: Settings, *, clock: Clock | None = None, migrate_schema: bool = True,
        pool_size: int = 10,
    ) -> Engine:
        """Connect, bring the schema up to date, and load the signing key."""
        if migrate_schema:
            # The migration lock is a session's advisory lock: never through a pooler.
            await migrate.apply_dsn(settings.session_url)
        pool = await store_pool.create_pool(settings.database_url, max_size=pool_size,
                                            pooled=settings.pooled)
        try:
            key = await keys.signing_key(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool=pool, settings=settings, signer=CredentialSigner(key),
                   clock=clock or SystemClock())

    async def close(self) -> None:
        await self.usage.flush()
        await self.pool.close()
