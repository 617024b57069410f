"""The controllers' work queue: client-go's rate-limited workqueue, in small.

A key (kind, namespace, name) is queued at most once and worked on by one thread at a
time; a key added while it runs runs once more afterwards and reads the object anew. A
reconcile that raises is never dropped: its key comes back after a per-key exponential
backoff (5 ms doubling to a cap of 5 minutes, or what a 429's Retry-After asks), on a timer,
not by sleeping in a worker; a success forgets the key's failures. Every exception is
caught, logged once with the key, and counted.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

from mlops_operator import metrics
from mlops_operator.kube import RETRYING, retry_after

log = logging.getLogger(__name__)

BASE_DELAY = 0.005
MAX_DELAY = 300.0
Work = Callable[[], None]


def backoff(failures: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds before the next try after `failures` failures in a row (1 -> base)."""
    return float(min(cap, base * 2 ** min(failures - 1, 64)))


class WorkQueue:
    def __init__(self, threads: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._threads = threads
        self._clock = clock
        self._cond = threading.Condition()
        self._order: deque[Hashable] = deque()
        self._queued: dict[Hashable, tuple[Work, contextvars.Context]] = {}
        self._busy: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        # Keys waiting out their backoff: (due, tie-breaker, key), and their work.
        self._later: list[tuple[float, int, Hashable]] = []
        self._waiting: dict[Hashable, tuple[float, Work, contextvars.Context]] = {}
        self._seq = itertools.count()
        self._started = False

    def add(self, key: Hashable, work: Work, *, first: bool = False) -> None:
        """Queue `key` (at the back; at the front if `first`) unless it is queued already."""
        with self._cond:
            self._start()
            self._add(key, work, contextvars.copy_context(), first=first)

    def add_after(self, key: Hashable, work: Work, delay: float) -> None:
        """Queue `key` in `delay` seconds (client-go's AddAfter), unless it is queued or due
        sooner already; an event for the key before then runs it at once instead."""
        with self._cond:
            self._start()
            waiting = self._waiting.get(key)
            if waiting is not None and waiting[0] <= self._clock() + delay:
                return
            self._add_later(key, work, contextvars.copy_context(), max(0.0, delay))

    def _add(self, key: Hashable, work: Work, context: contextvars.Context, *, first: bool) -> None:
        self._waiting.pop(key, None)  # a fresh event does not wait out an old backoff
        if key in self._queued:
            return
        self._queued[key] = (work, context)
        if key not in self._busy:
            if first:
                self._order.appendleft(key)
            else:
                self._order.append(key)
            self._cond.notify_all()
        metrics.queue_depth(len(self._queued) + len(self._waiting))

    def _add_later(
        self, key: Hashable, work: Work, context: contextvars.Context, delay: float
    ) -> None:
        due = self._clock() + delay
        if key in self._queued:
            return  # an event came in meanwhile: it runs anyway
        self._waiting[key] = (due, work, context)
        heapq.heappush(self._later, (due, next(self._seq), key))
        self._cond.notify_all()

    def failures(self, key: Hashable) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def depth(self) -> int:
        """Keys queued or waiting out a backoff."""
        with self._cond:
            return len(self._queued) + len(self._waiting)

    def _start(self) -> None:
        if self._started:
            return
        for i in range(self._threads):
            threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True).start()
        threading.Thread(target=self._timer, name="workqueue-timer", daemon=True).start()
        self._started = True

    def _timer(self) -> None:
        """Moves keys whose backoff is over back into the queue."""
        with self._cond:
            while True:
                now = self._clock()
                while self._later and self._later[0][0] <= now:
                    _, _, key = heapq.heappop(self._later)
                    waiting = self._waiting.get(key)
                    if waiting is not None and waiting[0] <= now:
                        del self._waiting[key]
                        self._add(key, waiting[1], waiting[2], first=False)
                timeout = (self._later[0][0] - now) if self._later else None
                self._cond.wait(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._order:
                    self._cond.wait()
                key = self._order.popleft()
                work, context = self._queued.pop(key)
                self._busy.add(key)
            failed: Exception | None = None
            try:
                context.run(self._run, work, key in self._failures)
            except Exception as err:  # any failure: the key comes back later, never lost
                failed = err
            with self._cond:
                self._busy.discard(key)
                if failed is None:
                    self._failures.pop(key, None)
                else:
                    self._retry(key, work, context, failed)
                if key in self._queued:
                    self._order.append(key)
                    self._cond.notify_all()
                metrics.queue_depth(len(self._queued) + len(self._waiting))

    @staticmethod
    def _run(work: Work, retrying: bool) -> None:
        """A retry reads its object from the server, not the cache (kube.RETRYING)."""
        RETRYING.set(retrying)
        work()

    def _retry(
        self, key: Hashable, work: Work, context: contextvars.Context, err: Exception
    ) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = retry_after(err) or backoff(failures)
        metrics.retried()
        # Logged once per failure, with the object; the traceback only for what is not an
        # API answer (a bug, a dropped connection) and only the first time in a row. The
        # exception itself, not True: this runs after its `except`, where sys.exc_info() is
        # empty (the log said "NoneType: None").
        traceback = err if failures == 1 and not _is_answer(err) else None
        log.warning(
            "reconciling %s failed (%d in a row), retrying in %.3gs: %s",
            key, failures, delay, _describe(err), exc_info=traceback,
        )  # fmt: skip
        self._add_later(key, work, context, delay)


def _is_answer(err: Exception) -> bool:
    return getattr(err, "status", None) is not None


def _describe(err: Exception) -> str:
    status = getattr(err, "status", None)
    if status is not None:
        return f"{status} {getattr(err, 'reason', '')}".strip()
    return f"{type(err).__name__}: {err}"
