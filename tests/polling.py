"""Waiting on a condition the tests cannot `kubectl wait` for (an Event, a log line)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    every: float = 0.5,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll until `check()` returns something truthy (and return it); fail naming `what`,
    with what `explain()` says about the state it was stuck in (CI keeps no logs)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(every)
