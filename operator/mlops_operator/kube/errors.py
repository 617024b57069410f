"""What the API server's answers mean to us: the errors a caller can act on."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from kubernetes.client.exceptions import ApiException


class AlreadyExists(Exception):
    """Creating an object whose name is taken."""


class Conflict(Exception):
    """A write computed from an older version of the object than the server's (409)."""


class NotLeader(Exception):
    """This replica does not hold the leader Lease: it must not write."""


class Refused(Exception):
    """The API server will not take this object as it is (400, 422): retrying the same
    write cannot help. The message is the server's."""


def message_of(err: ApiException) -> str:
    """The server's own message of a refusal (its Status object), else the HTTP reason."""
    try:
        return str(json.loads(err.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{err.status} {err.reason}"


def retry_after(err: BaseException) -> float | None:
    """Seconds a 429 (Too Many Requests) asks us to wait, or None."""
    if not isinstance(err, ApiException) or err.status != 429:
        return None
    headers = err.headers or {}
    try:
        return max(0.0, float(headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


@contextlib.contextmanager
def unless(status: int) -> Iterator[None]:
    """Ignore an API error of this HTTP status (404: already gone; 409: already there)."""
    try:
        yield
    except ApiException as err:
        if err.status != status:
            raise
