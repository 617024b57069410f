"""kopf handlers, one module per kind; thin: read, call builders, apply.

Importing this package registers every handler with kopf's default registry.
"""

import logging
from collections.abc import Iterable
from typing import Any

import kopf

from mlops_operator.controllers import model, modeldeployment, trainingjob
from mlops_operator.kube import Kube

__all__ = ["model", "modeldeployment", "trainingjob"]


class _NoEssence(kopf.AnnotationsDiffBaseStorage):
    """kopf builds each event's "essence" (a deep copy of the whole body) to detect changes
    for on.create/on.update handlers. We have none, so it is never used; building it was
    a tenth of the operator's CPU under load (py-spy, bench/training_latency.py --profile)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Every handler is an event handler (level-triggered: each recomputes from what exists),
    # so kopf keeps no state on the objects: no finalizer, no progress or diff-base
    # annotations. The operator writes only status.
    settings.persistence.diffbase_storage = _NoEssence()
    # Our handlers post their own Events for lifecycle transitions (kopf.event); kopf's
    # per-handler "succeeded" chatter stays in the log and out of `kubectl describe`.
    settings.posting.level = logging.WARNING
    memo["kube"] = Kube.connect()
