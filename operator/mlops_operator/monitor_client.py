"""The operator's side of the serving monitors: read one pod's /drift window.

Straight to the pod's IP on the monitor's admin port, with a short timeout and no proxy
(an HTTP proxy in the operator's environment would not reach pod IPs). An answer is used
only if it names the ModelDeployment, version and pod that were asked (a pod IP may belong
to another pod by the time it is read) and has every field the assessment sums
(builders/drift.py); anything else is a pod not answering, never an exception.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# No proxy for pod IPs, whatever HTTP_PROXY says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TIMEOUT_SECONDS = 3.0
# A window is counts per feature and bin: far below this, whatever the profile.
MAX_ANSWER_BYTES = 16 * 2**20
# What drift.assess and analysis.traffic sum from each pod's window.
WINDOW_FIELDS = frozenset({"windowSeconds", "requests", "errors", "samples", "latency", "features"})


class MonitorError(Exception):
    """A pod's monitor did not answer, or not with a window."""


@dataclass(frozen=True)
class Asked:
    """Whose window is wanted: what the answer must name."""

    model_deployment: str
    version: int
    pod: str


def read_drift(pod_ip: str, port: int, window_seconds: int, asked: Asked) -> dict[str, Any]:
    url = f"http://{pod_ip}:{port}/drift?window={window_seconds}"
    try:
        with _opener.open(url, timeout=TIMEOUT_SECONDS) as response:
            raw = response.read(MAX_ANSWER_BYTES + 1)
        if len(raw) > MAX_ANSWER_BYTES:
            raise MonitorError(f"{url}: an answer over {MAX_ANSWER_BYTES} bytes")
        body = json.loads(raw)
    except (OSError, ValueError, RecursionError) as err:  # refused, timeouts, bad JSON
        raise MonitorError(f"{url}: {err}") from None
    if not isinstance(body, dict):
        raise MonitorError(f"{url}: not a drift window")
    said = (body.get("modelDeployment"), body.get("version"), body.get("pod"))
    wanted = (asked.model_deployment, str(asked.version), asked.pod)
    if said != wanted:
        named = "ModelDeployment {!r}, version {!r}, pod {!r}"
        raise MonitorError(
            f"{url}: answered for {named.format(*said)}, not {named.format(*wanted)}"
        )
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
