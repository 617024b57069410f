"""Helpers for training code running inside a TrainingJob's pods.

    from mlops_operator.sdk import report
    report(metrics={"accuracy": 0.97}, artifact={"uri": output_uri, "digest": digest})

Imports no Kubernetes client and no kopf (import-linter checks it), so a
training image needs only this package's light dependencies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_operator.api.report import TrainingReport

# Where the kubelet reads the termination message from; overridable for local runs.
TERMINATION_LOG_ENV = "MLOPS_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def hparams() -> dict[str, str]:
    """The hyperparameters the operator passed in `MLOPS_HPARAMS`."""
    loaded: dict[str, str] = json.loads(os.environ.get("MLOPS_HPARAMS") or "{}")
    return loaded


def report(
    *,
    metrics: Mapping[str, float],
    artifact: Mapping[str, Any],
    path: str | Path | None = None,
) -> str:
    """Validate and write the run's report as the container's termination message.

    Raises ValueError (a ReportError) when the report is invalid or over 4 KiB, so
    the mistake shows in the training logs rather than as a silently truncated message.
    Returns the JSON written.
    """
    message = TrainingReport.model_validate(
        # float(): numpy scalars are common in training code and not plain floats.
        {"metrics": {k: float(v) for k, v in metrics.items()}, "artifact": dict(artifact)}
    ).to_message()
    target = Path(path or os.environ.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG)
    target.write_text(message)
    return message
