"""An engine (coordinator, dispatcher, waker, process backend) in a process of its own,
for tests that kill it: ``python -m tests.integration.engine_process DSN PORT``.
It serves the examples of examples/waits.py until it is killed."""

from __future__ import annotations

import asyncio
import sys

from examples import hello
from examples import waits as examples
from waypost.backends.process import ProcessBackend
from waypost.model.settings import Settings
from waypost.standalone import Standalone


async def serve(dsn: str, port: int) -> None:
    settings = Settings(database_url=dsn, coordinator_port=port, heartbeat_interval_seconds=1.0,
                        missed_heartbeats=30, poll_interval_seconds=0.5,
                        wait_poll_seconds=0.2)
    stack = await Standalone(settings, ProcessBackend(max_parallel=6)).start()
    await stack.register(examples.nap, hello.hello)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
