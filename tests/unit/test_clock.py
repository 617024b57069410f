"""The operator's decision clock follows the API server's, whatever this process's says."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import pytest

from mlops_operator.kube import clock


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    before = clock.offset()
    yield
    clock._offset = before


def test_the_offset_is_learnt_from_a_date_header_to_about_a_second() -> None:
    sent = time.time()
    ahead = email.utils.formatdate(sent + 120, usegmt=True)  # the server runs 2 min ahead
    clock.observe(ahead, sent, sent + 0.01)
    assert 119 <= clock.offset() <= 121
    assert abs(clock.now().timestamp() - (time.time() + 120)) <= 1.0


@pytest.mark.parametrize("header", [None, "", "yesterday", "Mon, 99 Foo 2026 99:99:99 GMT"])
def test_an_unreadable_date_leaves_the_offset(header: str | None) -> None:
    clock._offset = 7.0
    clock.observe(header, time.time(), time.time())
    assert clock.offset() == 7.0
