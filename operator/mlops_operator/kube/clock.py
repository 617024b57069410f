"""The time the operator decides by: the API server's clock, not this process's.

Replicas take over from each other and compare timestamps another replica wrote (when a
canary step began, when its pods stopped being Ready, when a run was last started). A
successor whose clock ran 30 s ahead would end a pause or a deadline 30 s early. So every
decision reads `now()`: this process's clock corrected by its offset to the API server's,
learnt from the `Date` header of the server's answers (the Lease is renewed every 2 s), to
about a second (the header's resolution). Until an answer has come, the offset is 0.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

# Read the Date header at most this often: parsing it on every answer would be waste.
OBSERVE_EVERY_SECONDS = 1.0

_offset = 0.0  # the API server's time minus ours, in seconds
_observed_at = -OBSERVE_EVERY_SECONDS  # time.monotonic() of the last observation


def now() -> datetime:
    """The API server's time, as well as this process knows it."""
    return datetime.fromtimestamp(time.time() + _offset, UTC)


def offset() -> float:
    return _offset


def observe(date: str | None, sent: float, received: float) -> None:
    """Learn the offset from one answer's `Date` header; `sent` and `received`: our
    time.time() around the call."""
    global _offset
    if not date:
        return
    try:
        server = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return
    # The header is whole seconds, cut down: the server's time was in [server, server + 1).
    _offset = server + 0.5 - (sent + received) / 2


def follow_server_time(api: client.ApiClient) -> client.ApiClient:
    """Have `api` observe the server's time from its answers (about once a second)."""
    rest = api.rest_client
    request: Callable[..., Any] = rest.request

    def timed(*args: Any, **kwargs: Any) -> Any:
        global _observed_at
        sent = time.time()
        response = request(*args, **kwargs)
        tick = time.monotonic()
        if tick - _observed_at >= OBSERVE_EVERY_SECONDS:
            _observed_at = tick
            header = getattr(response, "getheader", None)
            observe(header("Date") if header else None, sent, time.time())
        return response

    rest.request = timed
    return api
