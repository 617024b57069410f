"""The operator's decision clock follows the API server's, whatever this process's says,
and is never ahead of it."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator

import pytest

from mlops_operator.kube import clock


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    kept = clock._bounds
    clock._bounds = clock._Bounds()
    yield
    clock._bounds = kept


def answer(server_minus_monotonic: float, at: float, round_trip: float = 0.004) -> None:
    """An answer whose Date header the server stamped at monotonic time `at`."""
    stamped = math.floor(at + server_minus_monotonic)
    date = email.utils.formatdate(stamped, usegmt=True)
    clock.observe(date, at - round_trip / 2, at + round_trip / 2)


def bounds() -> tuple[float, float]:
    low, high = clock._bounds.low, clock._bounds.high
    assert low is not None
    assert high is not None
    return low, high


def test_one_answer_places_the_server_s_time_within_a_second_and_never_ahead() -> None:
    # The server runs 2 min ahead, and stamps its answer 0.1 s into a second: the old
    # estimate (the second's middle) was 0.4 s ahead of it, and a schedule fired early.
    at = time.monotonic()
    offset = math.floor(at + time.time() - time.monotonic() + 120) + 0.1 - at
    answer(offset, at)
    true = time.monotonic() + offset
    assert true - 1.0 <= clock.now().timestamp() <= true
    assert 119 <= clock.offset() <= 121


def test_answers_cut_at_other_fractions_narrow_it_to_a_round_trip() -> None:
    offset = 1000.37
    start = time.monotonic()
    for i in range(30):
        answer(offset, start + i * 1.13)  # stamped at another fraction of a second each time
        low, high = bounds()
        assert low <= offset < high
    low, high = bounds()
    assert high - low <= 0.15
    true = time.monotonic() + offset
    assert true - 0.15 <= clock.now().timestamp() <= true


def test_a_stepped_server_clock_is_followed_from_its_next_answer() -> None:
    start = time.monotonic()
    for i in range(5):
        answer(500.5, start + i)
    answer(-300.5, start + 5)  # the server's clock was set back 801 s
    low, high = bounds()
    assert low <= -300.5 < high


@pytest.mark.parametrize("header", [None, "", "yesterday", "Mon, 99 Foo 2026 99:99:99 GMT"])
def test_an_unreadable_date_teaches_nothing(header: str | None) -> None:
    answer(7.25, time.monotonic())
    before = (clock._bounds.low, clock._bounds.high)
    clock.observe(header, time.monotonic(), time.monotonic())
    assert (clock._bounds.low, clock._bounds.high) == before


def test_before_any_answer_it_is_this_process_s_clock() -> None:
    assert abs(clock.now().timestamp() - time.time()) < 0.1
