"""What `mlops-operator run` logs: kopf's per-event success lines only with --verbose."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from mlops_operator import logging_setup


@pytest.fixture
def restored() -> Iterator[None]:
    """configure() sets process-wide logging: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    objects = logging.getLogger("kopf.objects").level
    yield
    root.handlers[:], root.level = handlers, level
    logging.getLogger("kopf.objects").setLevel(objects)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    logging.getLogger("kopf.objects").info("Handler 'trainingjob_event' succeeded.")
    logging.getLogger("kopf.objects").warning("Handler 'trainingjob_event' failed temporarily")
    logging.getLogger("mlops_operator.controllers.common").info("ModelRegistered: registered")
    return [(r.name, r.getMessage()) for r in caplog.records]


@pytest.mark.usefixtures("restored")
def test_by_default_kopfs_success_lines_are_dropped_and_the_rest_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logging_setup.configure("text", verbose=False)
    assert logged(caplog) == [
        ("kopf.objects", "Handler 'trainingjob_event' failed temporarily"),
        ("mlops_operator.controllers.common", "ModelRegistered: registered"),
    ]


@pytest.mark.usefixtures("restored")
def test_verbose_logs_every_handler(caplog: pytest.LogCaptureFixture) -> None:
    logging_setup.configure("json", verbose=True)
    assert ("kopf.objects", "Handler 'trainingjob_event' succeeded.") in logged(caplog)
