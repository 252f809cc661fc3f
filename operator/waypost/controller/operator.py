"""`waypost operator`: the process every replica runs.

Every replica serves the coordinator API. The replica holding the Lease also
runs the kopf handlers, the dispatcher (Kubernetes backend), the scheduler and
the status mirror; it records the Lease's transition count as the leader epoch
in Postgres first, so writes of a former leader are refused. A replica that
loses the lease stops that work at once and exits, to come back clean as a
follower (client-go's advice: a former leader should not linger).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass

import kopf
from kubernetes import client, config

from waypost.backends.kubernetes import KubernetesBackend, KubernetesBackendSettings
from waypost.backends.kubernetes_api import KubernetesPodApi
from waypost.controller import handlers
from waypost.controller.leader import ElectionTiming, LeaderElector
from waypost.controller.lease_k8s import KubernetesLeaseStore
from waypost.controller.mirror import StatusMirror
from waypost.coordinator import server, startup
from waypost.coordinator.readiness import Readiness
from waypost.engine import loops
from waypost.engine.core import DEPOSED_EPOCH, Engine
from waypost.model.settings import Settings
from waypost.store import leadership

log = logging.getLogger("waypost.operator")


@dataclass(frozen=True)
class OperatorOptions:
    namespace: str
    identity: str
    lease_name: str = "waypost-leader"
    bind_host: str = "0.0.0.0"
    runner_image: str | None = None
    runner_image_pull_policy: str = "IfNotPresent"
    max_pods: int = 200
    max_warm_pods: int = 50
    watch_namespaces: tuple[str, ...] = ()  # empty: every namespace

    @classmethod
    def from_env(cls) -> OperatorOptions:
        namespaces = os.environ.get("WAYPOST_WATCH_NAMESPACES", "")
        return cls(
            namespace=os.environ.get("POD_NAMESPACE", "default"),
            identity=os.environ.get("POD_NAME") or socket.gethostname(),
            lease_name=os.environ.get("WAYPOST_LEASE_NAME", "waypost-leader"),
            runner_image=os.environ.get("WAYPOST_RUNNER_IMAGE") or None,
            runner_image_pull_policy=os.environ.get("WAYPOST_RUNNER_IMAGE_PULL_POLICY")
            or "IfNotPresent",
            max_pods=int(os.environ.get("WAYPOST_MAX_PODS", "200")),
            max_warm_pods=int(os.environ.get("WAYPOST_MAX_WARM_PODS", "50")),
            watch_namespaces=tuple(n for n in namespaces.split(",") if n),
        )


def kube_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class LeaderWork:
    """What only the leader runs; started on election, stopped on loss."""

    def __init__(self, engine: Engine, api_client: client.ApiClient,
                 options: OperatorOptions) -> None:
        self.engine = engine
        self.api_client = api_client
        self.options = options
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self._backend: KubernetesBackend | None = None

    async def start(self, epoch: int) -> None:
        if not await leadership.record_epoch(self.engine.pool, epoch, self.options.identity):
            raise RuntimeError(f"a newer leader epoch than {epoch} is already stored")
        self.engine.leader_epoch = epoch
        backend = await KubernetesBackend(KubernetesPodApi(self.api_client),
                                          KubernetesBackendSettings(
            coordinator_url=self.engine.settings.runner_coordinator_url,
            default_image=self.options.runner_image, max_pods=self.options.max_pods,
            max_warm_pods=self.options.max_warm_pods,
            image_pull_policy=self.options.runner_image_pull_policy,
            # A runner names its own service (waypost-runner) unless its Task sets one.
            otel_env={k: v for k, v in os.environ.items()
                      if k.startswith("OTEL_") and k != "OTEL_SERVICE_NAME"},
        )).open()
        loop = asyncio.get_running_loop()
        kopf_run = kopf.operator(
            registry=handlers.registry, memo=handlers.OperatorMemo(engine=self.engine),
            standalone=True,  # kopf's peering is not leader election: the Lease is
            clusterwide=not self.options.watch_namespaces,
            namespaces=self.options.watch_namespaces, stop_flag=self.stop,
        )
        self.tasks = [
            loop.create_task(kopf_run, name="kopf"),
            *loops.start(self.engine, backend, self.stop),
            loop.create_task(StatusMirror(self.engine, self.api_client).run(self.stop),
                             name="mirror"),
        ]
        self._backend = backend
        log.info("leading", extra={"epoch": epoch, "identity": self.options.identity})

    async def halt(self) -> None:
        # Leader-only writes stop now, before anything else (a loop still winding down
        # finds its fenced statements refused, not unfenced).
        self.engine.leader_epoch = DEPOSED_EPOCH
        self.stop.set()
        await loops.wind_down(self.tasks)
        if self._backend is not None:
            with contextlib.suppress(Exception):
                await self._backend.close()


async def run_operator(settings: Settings, options: OperatorOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Postgres may start after us (the bundled one): wait, alive but not ready.
    engine = await startup.open_engine(settings, options.bind_host, stop=stop)
    if engine is None:
        return 0
    readiness = Readiness()
    readiness.hold("leader", "no leader is known yet")
    runner = await server.serve(engine, options.bind_host, settings.coordinator_port,
                                readiness)
    log.info("coordinator API listening", extra={"port": settings.coordinator_port})

    api_client = kube_client()
    work = LeaderWork(engine, api_client, options)
    lost = asyncio.Event()

    async def started(epoch: int) -> None:
        await work.start(epoch)

    async def stopped(epoch: int) -> None:
        await work.halt()
        lost.set()

    elector = LeaderElector(
        KubernetesLeaseStore(api_client, options.namespace, options.lease_name),
        options.identity, engine.clock, timing=ElectionTiming(),
        on_started=started, on_stopped=stopped,
    )
    readiness.add("leader", lambda: None if elector.leader_known else
                  "no leader is known (no replica holds the Lease)")
    elector_stop = asyncio.Event()
    elector_task = loop.create_task(elector.run(elector_stop), name="elector")
    waiters = [loop.create_task(stop.wait()), loop.create_task(lost.wait())]
    try:
        while True:
            # kopf may take over SIGTERM while it runs; its end is our end too.
            pending = [*waiters, elector_task, *work.tasks]
            done, _ = await asyncio.wait(pending, timeout=1,
                                         return_when=asyncio.FIRST_COMPLETED)
            if done:
                break
    finally:
        if not lost.is_set():
            await work.halt()
        elector_stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(elector_task, 10)  # releases the lease if held
        for w in waiters:
            w.cancel()
        await runner.cleanup()
        await engine.close()
        api_client.close()
    if lost.is_set() and not stop.is_set():
        log.warning("lost the lease: exiting so the replica restarts as a follower")
        return 1
    return 0
