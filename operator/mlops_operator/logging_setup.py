"""Log output for `mlops-operator run`: text for people, JSON lines for log collectors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import kopf


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the object it is about.

    kopf attaches the Kubernetes object (apiVersion, kind, namespace, name, uid) to the log
    records of handlers as `k8s_ref`; it becomes `"object"`, so logs can be filtered by it.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if ref:
            entry["object"] = dict(ref)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(log_format: str, verbose: bool) -> None:
    # kopf's own setup: levels, its handler, asyncio's noise kept out; text lines are
    # prefixed with [namespace/name].
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.FULL, log_prefix=True)
    # kopf logs "Handler '...' succeeded." at INFO for every handler of every watch event:
    # about 20 lines per TrainingJob, 7 % of the samples under a burst, on the event loop
    # (docs/benchmarks.md), and nothing a reader needs. Its warnings and errors (a failing
    # handler) stay; --verbose shows everything.
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if verbose else logging.WARNING)
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
