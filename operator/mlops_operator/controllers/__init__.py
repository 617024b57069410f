"""kopf handlers, one module per kind; thin: read, call builders, apply.

Importing this package registers every handler with kopf's default registry.
"""

import logging
from typing import Any

import kopf

from mlops_operator.controllers import model, modeldeployment, trainingjob
from mlops_operator.kube import Kube

__all__ = ["model", "modeldeployment", "trainingjob"]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Every handler is an event handler (level-triggered: each recomputes from what exists),
    # so kopf keeps no state on the objects: no finalizer, no progress or diff-base
    # annotations. The operator writes only status.
    # Our handlers post their own Events for lifecycle transitions (kopf.event); kopf's
    # per-handler "succeeded" chatter stays in the log and out of `kubectl describe`.
    settings.posting.level = logging.WARNING
    memo["kube"] = Kube.connect()
