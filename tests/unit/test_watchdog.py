"""The watchdog (controllers/watchdog.py) against real asyncio tasks named as kopf names its
watch tasks: a watch that fails stops the process; a cancelled one (shutdown) does not."""

from __future__ import annotations

import asyncio

from mlops_operator.controllers import watchdog


async def _watch_that_fails() -> None:
    await asyncio.sleep(0.05)
    raise RuntimeError("Error in the watch-stream: {'code': 504}")


def test_a_failed_watch_restarts_once_and_says_which() -> None:
    restarts: list[str] = []

    async def scenario() -> list[str]:
        forever = asyncio.create_task(asyncio.sleep(60), name="watcher for pods.v1@ns")
        dying = asyncio.create_task(_watch_that_fails(), name="watcher for jobs.v1.batch@ns")
        other = asyncio.create_task(_watch_that_fails(), name="something else")
        await asyncio.wait_for(watchdog.run(lambda: restarts.append("now"), every=0.01), 5)
        forever.cancel()
        assert other.done()
        return watchdog.failed([forever, dying, other])

    dead = asyncio.run(scenario())
    assert restarts == ["now"]
    assert dead[0].startswith("jobs.v1.batch@ns: RuntimeError(")
    assert "'code': 504" in dead[0]


def test_cancelled_and_running_watches_are_not_failures() -> None:
    async def scenario() -> list[str]:
        running = asyncio.create_task(asyncio.sleep(60), name="watcher for a")
        cancelled = asyncio.create_task(asyncio.sleep(60), name="watcher for b")
        cancelled.cancel()
        await asyncio.sleep(0)
        found = watchdog.failed([running, cancelled])
        running.cancel()
        return found

    assert asyncio.run(scenario()) == []
