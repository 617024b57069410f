"""Plumbing every controller shares: the work queue they reconcile on, status writes,
Events, clocks."""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import kopf
from kopf._core.engines import posting as kopf_posting

from mlops_operator.controllers.workqueue import WorkQueue
from mlops_operator.kube import POOL_SIZE, Body, Kube

log = logging.getLogger(__name__)

# Fault tests only (tests/chaos): the process exits at this named point, as a crash would.
FAULT_ENV = "MLOPS_FAULT_EXIT_AT"

# Locks by key, kept only while someone holds or waits for them.
_guard = threading.Lock()
_locks: dict[Hashable, tuple[threading.Lock, int]] = {}


@contextmanager
def serialized(key: Hashable) -> Iterator[None]:
    """One holder at a time per key; every caller gets its turn."""
    with _guard:
        lock, users = _locks.get(key) or (threading.Lock(), 0)
        _locks[key] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _guard:
            lock, users = _locks[key]
            if users == 1:
                del _locks[key]
            else:
                _locks[key] = (lock, users - 1)


_queue = WorkQueue(POOL_SIZE)


def enqueue(
    kind: str, namespace: str, name: str, work: Callable[[], None], *, first: bool = False
) -> None:
    """Reconcile this object soon, on the work queue's threads (see workqueue.py); `first`
    puts it ahead of the queue, for an object nothing has been done for yet."""
    _remember_posting_context()
    _queue.add((kind, namespace, name), work, first=first)


def enqueue_after(
    kind: str, namespace: str, name: str, work: Callable[[], None], delay: float
) -> None:
    """Reconcile this object in `delay` seconds (a clock the object itself asks for: a
    schedule, a cooldown), unless something wakes it sooner."""
    _queue.add_after((kind, namespace, name), work, delay)


def write_status(kube: Kube, plural: str, body: Body, old: Body, new: Body) -> bool:
    """Merge-patch the status if it changed; returns whether it did."""
    if old == new:
        return False
    # Merge patch: a field the new status drops must be sent as null to be removed.
    patch: Body = {key: None for key in old if key not in new} | new
    kube.patch_status(plural, body, patch)
    return True


# kopf.event finds kopf's Event queue through context variables that kopf sets only inside
# its own per-object tasks. Work that began elsewhere runs without them: the resync ticker
# (started from a startup handler) and any queued reconcile whose context a resync replaced
# (the queue keeps the newest). There kopf.event raised LookupError and the Event was lost
# (an AnalysisFailed or DriftDetected missing from `kubectl describe`). So the context of the
# last kopf handler that queued work is kept, and an Event posted without one is posted in it
# (kopf has one Event queue per operator, whatever the object).
_posting_context: contextvars.Context | None = None


def _remember_posting_context() -> None:
    global _posting_context
    if kopf_posting.event_queue_var in contextvars.copy_context():
        _posting_context = contextvars.copy_context()


def post(body: Body, events: Iterable[Any]) -> None:
    """Post Events (objects with type, reason, message) about `body`, and log each one
    with the object it is about (the JSON log's "object")."""
    target = kopf.Body(cast(kopf.RawBody, body))
    here = contextvars.copy_context()
    context = here if kopf_posting.event_queue_var in here else _posting_context
    for event in events:
        log_event(body, event)
        if context is None:  # before any kopf handler ran: only the log has it
            log.warning("Event %s not posted: kopf's Event queue is not running", event.reason)
            continue
        # A copy each time: one Context cannot be entered by two threads at once.
        context.copy().run(
            kopf.event,
            target,
            type=event.type,
            reason=event.reason,
            message=event.message[:1024],
        )


def log_event(body: Body, event: Any) -> None:
    """Log what happened to `body` as `post` does, without posting an Event (which costs a
    request): for what the object's status already shows."""
    meta = body["metadata"]
    ref = {key: meta.get(key) for key in ("namespace", "name", "uid")}
    ref |= {"apiVersion": body.get("apiVersion"), "kind": body.get("kind")}
    level = logging.WARNING if event.type == "Warning" else logging.INFO
    log.log(level, "%s: %s", event.reason, event.message, extra={"k8s_ref": ref})


class Ticker:
    """Runs each registered piece of work every `seconds`, on one daemon thread.

    For what needs a clock rather than an event: rollout pauses and deadlines, and a
    deletion that waits on something to change. Our own thread rather than a kopf timer:
    kopf puts a finalizer on every object a timer runs for.
    """

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds
        self._work: dict[tuple[str, str], tuple[Callable[[], None], contextvars.Context]] = {}
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def want(self, key: tuple[str, str], work: Callable[[], None] | None) -> None:
        """Tick `work` for `key` from now on; None stops ticking it.

        Called from a reconcile: the work runs in that caller's context, so that it can
        post Events (kopf.event reads kopf's context variables).
        """
        with self._guard:
            if work is None:
                self._work.pop(key, None)
                return
            self._work[key] = (work, contextvars.copy_context())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.seconds)  # a clock, not a wait on a condition
            with self._guard:
                due = sorted(self._work.items())
            for key, (work, context) in due:
                try:
                    context.copy().run(work)
                except Exception:  # one failure must not stop every other key's clock
                    log.exception("%s tick for %s/%s failed", self.name, *key)


def maybe_exit_for_fault_test(point: str) -> None:
    """Exit the process here if MLOPS_FAULT_EXIT_AT names this point (never set in
    production): how the fault tests crash the operator between two writes."""
    if os.environ.get(FAULT_ENV) == point:
        log.error("fault test: exiting at %s", point)
        os._exit(70)
