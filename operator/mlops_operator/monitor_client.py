"""The operator's side of the serving monitors: read one pod's /drift window.

Straight to the pod's IP on the monitor's admin port, with a short timeout and no proxy
(an HTTP proxy in the operator's environment would not reach pod IPs); what a pod answers
is checked only for the fields the assessment sums (builders/drift.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

# No proxy for pod IPs, whatever HTTP_PROXY says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TIMEOUT_SECONDS = 3.0


class MonitorError(Exception):
    """A pod's monitor did not answer, or not with a window."""


def read_drift(pod_ip: str, port: int, window_seconds: int) -> dict[str, Any]:
    url = f"http://{pod_ip}:{port}/drift?window={window_seconds}"
    try:
        with _opener.open(url, timeout=TIMEOUT_SECONDS) as response:
            body = json.load(response)
    except (OSError, ValueError) as err:  # URLError, timeouts, refused, bad JSON
        raise MonitorError(f"{url}: {err}") from None
    if not isinstance(body, dict) or not isinstance(body.get("features"), list):
        raise MonitorError(f"{url}: not a drift window")
    for entry in body["features"]:
        if not (isinstance(entry, dict) and {"name", "reference", "counts"} <= entry.keys()):
            raise MonitorError(f"{url}: a feature without name, reference and counts")
    return body
