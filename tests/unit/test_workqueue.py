"""The controllers' work queue: one reconcile per key at a time, none lost, none doubled;
failures come back after a backoff, never dropped."""

from __future__ import annotations

import contextvars
import logging
import threading
import time

import pytest
from kubernetes.client.exceptions import ApiException

from mlops_operator.controllers.workqueue import WorkQueue, backoff

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
        if not done.is_set():
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


def test_backoff_doubles_from_milliseconds_to_a_cap_of_minutes() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [0.005, 0.01, 0.02]
    assert backoff(30) == 300.0
    assert backoff(10_000) == 300.0, "no overflow after a long outage"


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError("the API server is down"), ApiException(status=500), KeyError("bug")],
)
def test_a_failing_key_comes_back_until_it_succeeds(error: Exception) -> None:
    """Any exception type, an API error or not: the key is retried, and its failures are
    forgotten once it succeeds."""
    queue, tries, done = WorkQueue(threads=1), [], threading.Event()

    def flaky() -> None:
        tries.append(1)
        if len(tries) < 4:
            raise error
        done.set()

    queue.add("k", flaky)
    assert done.wait(WAIT)
    assert len(tries) == 4
    forgotten = threading.Event()
    queue.add("other", forgotten.set)
    assert forgotten.wait(WAIT)
    assert queue.failures("k") == 0


def test_a_429_waits_what_retry_after_asks() -> None:
    queue, started, done = WorkQueue(threads=1), [], threading.Event()
    slow_down = ApiException(status=429)
    slow_down.headers = {"Retry-After": "0.3"}

    def throttled() -> None:
        started.append(time.monotonic())
        if len(started) == 1:
            raise slow_down
        done.set()

    queue.add("k", throttled)
    assert done.wait(WAIT)
    assert started[1] - started[0] >= 0.3


def test_an_event_during_a_backoff_runs_at_once() -> None:
    """A key waiting out a long backoff runs as soon as something new happens to it."""
    queue, ran, failed, done = WorkQueue(threads=1), [], threading.Event(), threading.Event()
    long_wait = ApiException(status=429)
    long_wait.headers = {"Retry-After": "600"}

    def first() -> None:
        failed.set()
        raise long_wait

    queue.add("k", first)
    assert failed.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while queue.failures("k") == 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # the worker is between the raise and the requeue
    assert queue.depth() == 1, "waiting out its backoff, not dropped"
    queue.add("k", lambda: (ran.append("news"), done.set()))
    assert done.wait(WAIT)
    assert ran == ["news"]


def test_add_after_runs_the_key_once_its_time_comes_and_the_sooner_time_wins() -> None:
    """A ContinuousTraining's clock: the next schedule time, or a cooldown's end."""
    queue = WorkQueue(threads=2)
    ran: list[tuple[str, float]] = []
    done = threading.Event()

    def work(label: str) -> None:
        ran.append((label, time.monotonic()))
        done.set()

    start = time.monotonic()
    queue.add_after("ct", lambda: work("late"), 30)
    queue.add_after("ct", lambda: work("soon"), 0.2)  # sooner: replaces the later one
    queue.add_after("ct", lambda: work("later again"), 20)  # later than what waits: ignored
    assert done.wait(WAIT)
    ((label, at),) = ran
    assert label == "soon"
    assert at - start >= 0.2  # not before its time


def test_an_event_runs_a_waiting_key_at_once() -> None:
    queue = WorkQueue(threads=1)
    done = threading.Event()
    queue.add_after("ct", lambda: None, 3600)
    queue.add("ct", done.set)
    assert done.wait(WAIT)
    assert queue.depth() == 0  # the hour-long wait went with it: the reconcile asks anew


def test_a_bug_s_first_failure_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not "NoneType: None": the log is where an unexpected exception is found."""
    queue = WorkQueue(threads=1)
    done = threading.Event()
    tries: list[int] = []

    def buggy() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise KeyError("name")
        done.set()

    with caplog.at_level(logging.WARNING, logger="mlops_operator.controllers.workqueue"):
        queue.add("k", buggy)
        assert done.wait(WAIT)
    (record,) = [r for r in caplog.records if "failed (1 in a row)" in r.getMessage()]
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError
    assert "raise KeyError" in caplog.text
