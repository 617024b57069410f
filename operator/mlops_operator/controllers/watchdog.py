"""Stop a process whose watch kopf has given up on, so that it is started again.

kopf never restarts a resource's watch task that failed: it logs "watcher for X has failed"
and that process hears nothing more of X. kopf ends the task on an ERROR event in the stream
(any code but 410 Gone) and on API errors that outlast its retries, which a control plane
coming back from an outage can send. The periodic resync reads the cache that the dead
watch fed, so its work would wait forever. Exiting instead is a crash-only recovery: the
next start (this replica or the standby) lists everything afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

WATCHER_PREFIX = "watcher for "  # how kopf names the task of each resource's watch
CHECK_SECONDS = 2.0


def failed(tasks: Iterable[asyncio.Task[object]]) -> list[str]:
    """What each of these watch tasks that ended with an error died of."""
    return [
        f"{t.get_name().removeprefix(WATCHER_PREFIX)}: {t.exception()!r}"
        for t in tasks
        if t.done() and not t.cancelled() and t.exception() is not None
    ]


async def run(restart: Callable[[], None], every: float = CHECK_SECONDS) -> None:
    """Check kopf's watch tasks every `every` seconds; call `restart` once one has failed."""
    watches: set[asyncio.Task[object]] = set()
    announced = False
    while True:
        # A finished task leaves asyncio.all_tasks(): keep the ones seen, to see them end.
        watches |= {t for t in asyncio.all_tasks() if t.get_name().startswith(WATCHER_PREFIX)}
        if watches and not announced:
            log.info("watchdog: %d watch streams", len(watches))
            announced = True
        dead = failed(watches)
        if dead:
            why = "; ".join(dead)
            log.error("watchdog: a watch stream failed (%s); stopping, to start again", why)
            restart()
            return
        await asyncio.sleep(every)
