"""The time the operator decides by: the API server's clock, not this process's.

Replicas take over from each other and compare timestamps another replica wrote (when a
canary step began, when its pods stopped being Ready, when a run was last started). A
successor whose clock ran 30 s ahead would end a pause or a deadline 30 s early. So every
decision reads `now()`: the API server's time, learnt from the `Date` header of its answers
(the Lease is renewed every 2 s) against this process's monotonic clock, which no one steps.

The header is whole seconds, so one answer places the server's time within a second; the
answers of the last minute, each cut at another fraction of a second, narrow it to about a
round trip. `now()` is the earliest time they allow: a decision may come a little late, never
early (a schedule never fires before its minute, a pause never ends short). Until an answer
has come, it is this process's wall clock.
"""

from __future__ import annotations

import email.utils
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

# Read the Date header at most this often: parsing it on every answer would be waste.
OBSERVE_EVERY_SECONDS = 1.0
# Answers whose bounds are combined: about the last minute's (clocks drift apart slowly).
WINDOW = 60


class _Bounds:
    """The server's time minus time.monotonic(): at least `low`, less than `high`."""

    def __init__(self) -> None:
        self.seen: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self.low: float | None = None
        self.high: float | None = None

    def add(self, low: float, high: float) -> None:
        self.seen.append((low, high))
        self.low = max(b[0] for b in self.seen)
        self.high = min(b[1] for b in self.seen)
        if self.low > self.high:  # a clock was stepped: start again from this answer
            self.seen.clear()
            self.seen.append((low, high))
            self.low, self.high = low, high


_bounds = _Bounds()
_observed_at = -OBSERVE_EVERY_SECONDS  # time.monotonic() of the last observation


def now() -> datetime:
    """The API server's time, as early as what this process knows of it allows."""
    if _bounds.low is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(time.monotonic() + _bounds.low, UTC)


def offset() -> float:
    """What `now()` adds to this process's wall clock, in seconds."""
    return now().timestamp() - time.time()


def observe(date: str | None, sent: float, received: float) -> None:
    """Learn from one answer's `Date` header; `sent` and `received`: time.monotonic()
    around the call."""
    if not date:
        return
    try:
        server = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return
    # The server's time, cut down to whole seconds, was `server` at some moment between
    # `sent` and `received`: so it was in [server, server + 1) then.
    _bounds.add(server - received, server + 1 - sent)


def follow_server_time(api: client.ApiClient) -> client.ApiClient:
    """Have `api` observe the server's time from its answers (about once a second)."""
    rest = api.rest_client
    request: Callable[..., Any] = rest.request

    def timed(*args: Any, **kwargs: Any) -> Any:
        global _observed_at
        sent = time.monotonic()
        response = request(*args, **kwargs)
        received = time.monotonic()
        if received - _observed_at >= OBSERVE_EVERY_SECONDS:
            _observed_at = received
            header = getattr(response, "getheader", None)
            observe(header("Date") if header else None, sent, received)
        return response

    rest.request = timed
    return api
