"""The controllers' work queue: one reconcile per key at a time, none lost, none doubled."""

from __future__ import annotations

import contextvars
import threading

from mlops_operator.controllers.common import WorkQueue

WAIT = 10  # seconds; every wait below ends as soon as its condition holds


def test_a_key_added_while_it_runs_runs_once_more_afterwards() -> None:
    queue = WorkQueue(threads=1)  # one thread: "other" runs after anything queued for "k"
    started, release, runs = threading.Event(), threading.Event(), []
    done = threading.Event()

    def first() -> None:
        runs.append("first")
        started.set()
        assert release.wait(WAIT)

    def again() -> None:
        runs.append("again")
        done.set()

    queue.add("k", first)
    assert started.wait(WAIT)
    queue.add("k", again)  # while "first" runs: queued behind it, not beside it
    queue.add("k", again)  # already queued: coalesced
    release.set()
    assert done.wait(WAIT)
    flushed = threading.Event()
    queue.add("other", flushed.set)
    assert flushed.wait(WAIT)
    assert runs == ["first", "again"]


def test_first_goes_ahead_of_what_is_queued() -> None:
    queue = WorkQueue(threads=1)
    started, release, done, order = threading.Event(), threading.Event(), threading.Event(), []

    def blocker() -> None:
        started.set()
        assert release.wait(WAIT)

    queue.add("busy", blocker)
    assert started.wait(WAIT)
    queue.add("update", lambda: order.append("update"))
    queue.add("new", lambda: order.append("new"), first=True)
    queue.add("last", done.set)
    release.set()
    assert done.wait(WAIT)
    assert order == ["new", "update"]


def test_different_keys_run_side_by_side() -> None:
    queue = WorkQueue(threads=2)
    barrier = threading.Barrier(2, timeout=WAIT)
    done = [threading.Event(), threading.Event()]
    for i in range(2):
        queue.add(i, lambda i=i: (barrier.wait(), done[i].set()))
    assert all(event.wait(WAIT) for event in done)


def test_a_failing_reconcile_does_not_stop_the_queue() -> None:
    queue = WorkQueue(threads=1)

    def broken() -> None:
        raise ValueError("a bug")

    done = threading.Event()
    queue.add("bad", broken)
    queue.add("good", done.set)
    assert done.wait(WAIT)


def test_work_runs_in_the_context_it_was_added_from() -> None:
    """kopf.event reads kopf's context variables: they must reach the worker thread."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    queue, seen, done = WorkQueue(threads=1), [], threading.Event()
    var.set("from the handler")
    queue.add("k", lambda: (seen.append(var.get()), done.set()))
    assert done.wait(WAIT)
    assert seen == ["from the handler"]
