"""Events reach kopf's Event queue from wherever the reconcile runs: a work-queue thread
whose work began in a kopf handler, or the resync ticker, which kopf never started (its
context lacks kopf's posting variables; the Events it posted were lost)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator

import kopf
import pytest
from kopf._core.engines import posting

from mlops_operator.builders.meta import Event
from mlops_operator.controllers import common

BODY = {
    "apiVersion": "mlops.seed.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"namespace": "team", "name": "iris", "uid": "u-1"},
}
WAIT = 10  # seconds; each wait ends as soon as its condition holds


@pytest.fixture
def kopf_queue() -> Iterator[tuple[asyncio.AbstractEventLoop, asyncio.Queue[posting.K8sEvent]]]:
    """kopf's Event queue on a running loop of its own thread, as in the operator."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    queue: asyncio.Queue[posting.K8sEvent] = asyncio.Queue()
    yield loop, queue
    loop.call_soon_threadsafe(loop.stop)


def in_a_kopf_handler(loop: asyncio.AbstractEventLoop, queue: object) -> contextvars.Context:
    """The context kopf gives a handler: settings and the Event queue set."""
    context = contextvars.Context()
    context.run(posting.settings_var.set, kopf.OperatorSettings())
    context.run(posting.event_queue_loop_var.set, loop)
    context.run(posting.event_queue_var.set, queue)
    return context


def received(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[posting.K8sEvent]) -> str:
    async def get() -> posting.K8sEvent:
        return await asyncio.wait_for(queue.get(), WAIT)

    return asyncio.run_coroutine_threadsafe(get(), loop).result(WAIT + 1).reason


def on_a_thread_kopf_never_started(work: Callable[[], object]) -> None:
    """Run `work` as the resync ticker runs: a plain thread, an empty context."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as err:  # handed back to the test
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT)
    assert not errors, errors


def test_an_event_posted_outside_kopf_handlers_reaches_kopf_s_queue(
    kopf_queue: tuple[asyncio.AbstractEventLoop, asyncio.Queue[posting.K8sEvent]],
) -> None:
    loop, queue = kopf_queue
    done = threading.Event()
    # A handler queued work once, as every watch event does.
    in_a_kopf_handler(loop, queue).run(common.enqueue, "T", "team", "x", done.set)
    assert done.wait(WAIT)

    event = Event("Warning", "AnalysisFailed", "canary 2 answered errors")
    on_a_thread_kopf_never_started(lambda: common.post(BODY, [event]))
    assert received(loop, queue) == "AnalysisFailed"


def test_an_event_posted_in_a_handler_s_context_is_posted_there(
    kopf_queue: tuple[asyncio.AbstractEventLoop, asyncio.Queue[posting.K8sEvent]],
) -> None:
    loop, queue = kopf_queue
    event = Event("Normal", "Promoted", "version 2 serves")
    in_a_kopf_handler(loop, queue).run(common.post, BODY, [event])
    assert received(loop, queue) == "Promoted"


def test_before_any_handler_ran_an_event_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(common, "_posting_context", None)
    event = Event("Warning", "DriftDetected", "petal_length PSI 5.1")
    with caplog.at_level(logging.INFO, logger=common.__name__):
        on_a_thread_kopf_never_started(lambda: common.post(BODY, [event]))
    assert "DriftDetected not posted" in caplog.text
