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
# What drift.assess and analysis.traffic sum from each pod's window.
WINDOW_FIELDS = frozenset({"windowSeconds", "requests", "errors", "samples", "latency", "features"})


class MonitorError(Exception):
    """A pod's monitor did not answer, or not with a window."""


def read_drift(pod_ip: str, port: int, window_seconds: int) -> dict[str, Any]:
    url = f"http://{pod_ip}:{port}/drift?window={window_seconds}"
    try:
        with _opener.open(url, timeout=TIMEOUT_SECONDS) as response:
            body = json.load(response)
    except (OSError, ValueError) as err:  # URLError, timeouts, refused, bad JSON
        raise MonitorError(f"{url}: {err}") from None
    if not isinstance(body, dict):
        raise MonitorError(f"{url}: not a drift window")
    missing = sorted(WINDOW_FIELDS - body.keys())
    if missing:
        raise MonitorError(f"{url}: a drift window without {', '.join(missing)}")
    if not isinstance(body["features"], list):
        raise MonitorError(f"{url}: not a drift window")
    latency = body["latency"]
    if not (isinstance(latency, dict) and {"bounds", "counts"} <= latency.keys()):
        raise MonitorError(f"{url}: latency without bounds and counts")
    for entry in body["features"]:
        if not _histogram(entry):
            raise MonitorError(f"{url}: a feature without name, reference and counts")
    if "predictions" in body and not _histogram(body["predictions"]):
        raise MonitorError(f"{url}: predictions without name, reference and counts")
    return body


def _histogram(entry: Any) -> bool:
    """One feature's (or the predictions') counts as builders/drift.py sums them."""
    return isinstance(entry, dict) and {"name", "reference", "counts"} <= entry.keys()
